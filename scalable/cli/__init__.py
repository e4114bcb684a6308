"""The ``scalable`` command: a thin layer over the public Python API.

Each command module registers its commands on :data:`scalable.cli.app.app`; ``main`` runs
it with scalable's exit codes: 0 ok, 1 a failure (a ``ScalableError``), 2 usage.
"""

from scalable.cli.app import app, main

__all__ = ["app", "main"]
