"""How rows are kept: schemas, memtables, Parquet segments, manifests, merges, deletes
and retention, checksums of rows.

Layer 3 of the engine: imports io and the ground.
"""
