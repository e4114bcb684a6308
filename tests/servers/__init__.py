"""Real object-store servers for the test suite: SeaweedFS (S3), fake-gcs-server (GCS), Azurite (Azure Blob).

``tests.servers.plugin`` turns them into session-scoped pytest fixtures; ``tests.servers.base``
holds what they share (free ports, process start/stop by pid, readiness, logs).
"""
