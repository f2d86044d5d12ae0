"""Replication: a primary ships its log to replica stores; a standby follows one.

Modules: :mod:`.layout` (what a replica store holds, and the epoch claims),
:mod:`.snapshots` (the snapshots a store holds), :mod:`.walsource`
(committed records read back from a primary's WAL), :mod:`.shipper` (one store's
shipping), :mod:`.primary` (shipping, holding and byrl inside a writing database),
:mod:`.standby` (follow and promote), :mod:`.pitr` (point-in-time restore),
:mod:`.status` (what ``replica status`` reports). The shipped segment format is
:mod:`engine.replication.logsegment`. The small local files that remember positions
are the database layer's (:mod:`engine.db.replicastate`).

Layer 8 of the engine: imports ingest, archive (snapshots are archives), the database
layer and below; the database layer reaches it only through :mod:`engine.db.shipping`.
"""
