"""Data in: line protocol (native, vectorised and exact parsers), CSV and InfluxDB 2 annotated
CSV, and the pipeline that batches and commits them.

Layer 7 of the engine: imports the database layer and below.
"""
