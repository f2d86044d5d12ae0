"""Command groups of the tsadmin CLI.

These modules do not use ``from __future__ import annotations``: Typer reads every
command's signature to build the parser, and string annotations cost it an ``eval``
each (about a third of building a command tree, paid by every command line).
"""
