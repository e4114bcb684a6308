"""The ``scalable`` command: a thin layer over the public Python API.

:data:`scalable.cli.app.app` is the application; :mod:`scalable.cli.commands` lists its
commands and loads the one that runs. ``main`` runs it with scalable's exit codes: 0 ok,
1 a failure (a ``ScalableError``), 2 usage.
"""

from scalable.cli.app import app, main

__all__ = ["app", "main"]
