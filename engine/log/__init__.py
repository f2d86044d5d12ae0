"""The write-ahead log: its byte format (``wal``), what each record type means
(``walkinds``) and group commit.

Layer 5 of the engine: imports storage (the rows and deletes it encodes), io and
the ground.
"""
