"""The primitive boundary between the object layer and a transport.

:class:`~scalable.artifacts.store.BaseArtifactStore` (the object layer: digests, trees,
refs, versions, gc) is written once over a small set of primitives that a transport
supplies, on POSIX paths relative to the store's root. A new backend is one small file
that implements them:

================================  =========================================================
primitive                          meaning
================================  =========================================================
``_open_write(rel)``               a writable binary file that appears whole on clean exit,
                                   or not at all (an interrupted multipart upload is aborted)
``_write_bytes(data, rel)``        one whole-or-nothing write of small bytes
``_create_exclusive(data, rel)``   a conditional put: write only if ``rel`` does not exist;
                                   ``True`` if written, ``False`` if something was there
``_open_read(rel)``                a seekable binary file; ``FileNotFoundError`` if missing
``_read_bytes(rel)``               the whole object; ``_read_many(rels)`` several at once
``_read_range(rel, start, n)``     ``n`` bytes from ``start`` (a ranged GET)
``_head(rel)``                     :class:`ObjectStat` of a file, or ``None``: one request
``_exists(rel)``                   a file (not a folder) is there
``_list_files(rel_dir)``           every file below ``rel_dir``, relative to it
``_list_stats(rel_dir)``           the same with each file's :class:`ObjectStat` (for gc)
``_remove(rel, recursive=)``       remove; missing is fine
``_copy_within(src, dst)``         copy inside the store (server-side where the service can)
``_list_incomplete_uploads(dir)``  multipart uploads begun under ``dir`` and never finished
``_abort_upload(upload)``          abort one of those
================================  =========================================================

Only the first five, ``_exists``, ``_list_files`` and ``_remove`` have no default; the
others fall back to those (a stream copy, a read for a range, no multipart uploads).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ObjectStat:
    """What one request tells about a stored file: its size and when it was last written (UTC)."""

    size: int
    mtime: datetime
    #: The service's entity tag or generation, where its listing gives one (it changes on every write).
    etag: str | None = None


@dataclass(frozen=True)
class IncompleteUpload:
    """A multipart upload that was begun and never completed or aborted (a killed put)."""

    rel: str
    upload_id: str
    started: datetime


__all__ = ["IncompleteUpload", "ObjectStat"]
