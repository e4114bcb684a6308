"""Sessions: a run that executes tasks on Dask and records what it made.

from scalable.session import ScalableSession

with ScalableSession.from_yaml() as session:
    results = session.gather(session.map(simulate, range(40)))
    session.record_artifact("output.csv", kind="result")
"""

from scalable.session.handle import (
    NoSessionError,
    SessionClosedError,
    SessionHandle,
    current_session,
)
from scalable.session.session import ScalableSession
from scalable.session.targets import Target, TargetError, build_cluster, job_script

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
