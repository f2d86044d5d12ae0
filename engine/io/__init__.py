"""The one door to the file system: every durable change goes through ``fileio``
(with its fault injection), the writer lock, and scratch directories.

Layer 2 of the engine (see ``tests/test_layers.py``): imports only the ground
(``engine.errors``, ``engine.settings``, ``engine.names``).
"""
