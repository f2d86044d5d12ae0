"""tsadmin: the command-line operations toolkit."""
