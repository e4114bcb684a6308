"""Run ids as people type them: the id itself, or a prefix of exactly one id.

Written once, here, for every place that finds a run (the catalog's queries and
``scalable.session.locate``): ``pick_run_id`` takes the ids that start with what was typed
and returns the one, ``None`` for none, or raises naming the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable

from scalable.errors import RunNotFoundError

#: How many candidates an ambiguous-prefix message lists.
SHOWN_CANDIDATES = 10


def pick_run_id(typed: str, candidates: Iterable[str], where: str) -> str | None:
    """The one run id of ``candidates`` (ids starting with ``typed``), ``None`` if there is none.

    An exact match wins over longer ids sharing the prefix. Raises
    :class:`~scalable.errors.RunNotFoundError` when ``typed`` is a prefix of several ids,
    listing up to :data:`SHOWN_CANDIDATES` of them and ``where`` they are.
    """
    ids = sorted(set(candidates))
    if typed in ids:
        return typed
    if not ids:
        return None
    if len(ids) == 1:
        return ids[0]
    shown = ", ".join(ids[:SHOWN_CANDIDATES])
    more = f" and {len(ids) - SHOWN_CANDIDATES} more" if len(ids) > SHOWN_CANDIDATES else ""
    raise RunNotFoundError(
        f"run id prefix {typed!r} is ambiguous: it matches {len(ids)} runs in {where} ({shown}{more}); "
        "give more of the id"
    )


__all__ = ["SHOWN_CANDIDATES", "pick_run_id"]
