"""Command groups of the tsadmin CLI."""
