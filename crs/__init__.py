"""The persona-crs application: CLI, runs, terminal dialogue and reports."""

__version__ = "0.1.0"
