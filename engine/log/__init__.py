"""The write-ahead log: its byte format (``wal``), the one loop that reads records
with a named policy for damage (``reader``), the one transaction assembler (``txn``),
what each record type means (``walkinds``), what a salvage keeps (``salvage``) and
group commit. Record types are compared only here: every other layer asks these
modules what a record is.

Layer 5 of the engine: imports storage (the rows and deletes it encodes), io and
the ground.
"""
