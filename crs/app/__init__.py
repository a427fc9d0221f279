"""The application layer: the use cases the `crs` commands call (training, evaluation, sweeps).

The ``crs/*_cmd.py`` modules are thin typer shells that parse options and call these; no command
imports another command.
"""
