"""How rows are kept: schemas, memtables, Parquet segments, manifests, merges and the
merged scan (with the run files it spills), deletes and retention, checksums of rows.

Layer 3 of the engine: imports io and the ground.
"""
