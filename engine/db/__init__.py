"""The database: its lifecycle and write path, checkpoints, recovery (the log applied
to storage), reads, verify and repair, the data directory, health, and what a
database knows of its replication (``replicastate``; it ships through the seam in
``shipping``).

Layer 6 of the engine: imports the log, storage, stores, io and the ground.
"""
