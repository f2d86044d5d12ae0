"""The database. ``database`` is an open database's lifecycle and write path; its
other parts each work on the shared ``core``: checkpoints and compaction
(``checkpointing``), background threads (``maintenance``), the catalog, settings and
replica stores (``catalog``, ``configure``, ``replicas``), a standby's apply
(``standbyapply``), promotion and restore installs (``install``). Beside them:
recovery (the log applied to storage), reads, verify and repair, the data directory,
health, and what a database knows of its replication (``replicastate``; it ships
through the seam in ``shipping``).

Layer 6 of the engine: imports the log, storage, stores, io and the ground.
"""
