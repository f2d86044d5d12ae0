"""Backup archives: their format, backup, restore, and archives in a store.

Layer 7 of the engine: imports the database layer and below.
"""
