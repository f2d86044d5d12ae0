"""Replication: a primary ships its log to replica stores; a standby follows one.

Modules: :mod:`.layout` (what a replica store holds, and the epoch claims),
:mod:`.state` (the small local files that remember positions), :mod:`.walsource`
(committed records read back from a primary's WAL), :mod:`.shipper` (one store's
shipping), :mod:`.primary` (shipping, holding and byrl inside a writing database),
:mod:`.standby` (follow and promote), :mod:`.pitr` (point-in-time restore),
:mod:`.status` (what ``replica status`` reports). The shipped segment format is
:mod:`engine.logsegment`.
"""
