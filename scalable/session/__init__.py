"""Sessions: a run that executes tasks on Dask and records what it made.

from scalable.session import ScalableSession

with ScalableSession.from_yaml() as session:
    results = session.gather(session.map(simulate, range(40)))
    session.record_artifact("output.csv", kind="result")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

if TYPE_CHECKING:
    from scalable.session.handle import (
        NoSessionError,
        SessionClosedError,
        SessionHandle,
        current_session,
    )
    from scalable.session.session import ScalableSession
    from scalable.session.targets import Target, TargetError, build_cluster, job_script

_EXPORTS = {
    "NoSessionError": "scalable.session.handle",
    "SessionClosedError": "scalable.session.handle",
    "SessionHandle": "scalable.session.handle",
    "current_session": "scalable.session.handle",
    "ScalableSession": "scalable.session.session",
    "Target": "scalable.session.targets",
    "TargetError": "scalable.session.targets",
    "build_cluster": "scalable.session.targets",
    "job_script": "scalable.session.targets",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

__all__ = [
    "NoSessionError",
    "ScalableSession",
    "SessionClosedError",
    "SessionHandle",
    "Target",
    "TargetError",
    "build_cluster",
    "current_session",
    "job_script",
]
