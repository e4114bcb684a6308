"""Remote cache entries read through the local mirror, so a fetched entry outlives an outage.

A remote hit reads the entry's ref (one request), then its bytes from the machine's local
mirror (:mod:`scalable.artifacts.mirror`), which downloads them only if it does not hold that
digest yet. Beside the mirror, one small file per entry remembers which digest the remote
named for a cache key::

    <mirror>/cache-names/<hash of the remote's URI>/<key[:2]>/<key>    "sha256:<hex>"

With the remote down (or resting after a failure) the tier looks the key up there and, if
the mirror still holds that digest (verified, see the mirror), serves it: an entry this
machine fetched before is still a hit. The names are derived data: deleting them, or the
mirror, only costs downloads. Entries are still checked by the tier afterwards (CRC and,
with a secret, the HMAC), whichever way they came.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from scalable.artifacts.mirror import Mirror, is_digest
from scalable.errors import ArtifactChangingError, MirrorError, ScalableError

log = logging.getLogger("scalable.cache")


class MirroredEntries:
    """The entries of one remote store, read through ``mirror`` and remembered by cache key."""

    def __init__(self, mirror: Mirror, remote_uri: str) -> None:
        self.mirror = mirror
        self._names = mirror.root / "cache-names" / hashlib.sha256(remote_uri.encode("utf-8")).hexdigest()[:24]

    def _name_file(self, key: str) -> Path:
        return self._names / key[:2] / key

    def read(self, store: Any, entry_key: str, key: str) -> bytes:
        """The entry's bytes: its ref from ``store``, its content from the mirror (downloaded once).

        Errors of the store propagate (the tier turns them into misses or errors); a mirror
        that cannot hold the entry (full, unwritable, bounded too small) is bypassed.
        """
        ref = store.info(entry_key)
        try:
            path = self.mirror.fetch_ref(store, ref)
            try:
                data = path.read_bytes()
            finally:
                self.mirror.release(ref.digest)  # read into memory: no need to hold the entry
        except ArtifactChangingError:  # replaced between the ref read and the download
            return bytes(store.get_bytes(entry_key))
        except (MirrorError, OSError) as exc:
            if isinstance(exc, (ConnectionError, TimeoutError)) or (
                isinstance(exc, ScalableError) and not isinstance(exc, MirrorError)
            ):
                raise  # the store's failure, not the mirror's
            log.debug("local mirror %s cannot hold cache entry %s (%s): read directly", self.mirror.root, key, exc)
            return bytes(store.get_bytes(entry_key))
        self._remember(key, ref.digest)
        return data

    def read_offline(self, key: str) -> bytes | None:
        """The bytes of the entry this machine fetched for ``key`` before, from the mirror alone; ``None`` if gone."""
        try:
            digest = self._name_file(key).read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            return None
        if not is_digest(digest):
            return None
        try:
            path = self.mirror.path_of(digest)
            if path is None or not path.is_file():
                return None
            try:
                return path.read_bytes()
            finally:
                self.mirror.release(digest)
        except (OSError, ScalableError):
            return None

    def _remember(self, key: str, digest: str) -> None:
        target = self._name_file(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{key[:8]}.")
            try:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(digest)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # only costs a download during a later outage
            log.debug("cannot remember cache entry %s in %s: %s", key, self._names, exc)


__all__ = ["MirroredEntries"]
