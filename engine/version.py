"""The one version source: pyproject.toml reads it, archives and the write endpoint
record it. The on-disk format versions each release introduced are in CHANGELOG.md."""

__version__ = "0.4.0"
