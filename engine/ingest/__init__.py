"""Data in: line protocol (exact and vectorised parsers), CSV and InfluxDB 2 annotated
CSV, and the pipeline that batches and commits them.

Layer 7 of the engine: imports the database layer and below.
"""
