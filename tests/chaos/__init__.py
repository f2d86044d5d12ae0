"""A fault campaign against real processes (make chaos); see __main__.py."""
