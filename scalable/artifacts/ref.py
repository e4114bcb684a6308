"""``ArtifactRef``: the immutable, JSON-round-tripping description of a committed artifact."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scalable.artifacts.kinds import ArtifactKind


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


class ArtifactRef(BaseModel):
    """A committed artifact: where it is, what it is, and the digest that proves its bytes.

    ``digest`` is ``"sha256:<hex>"`` for every kind; for a directory it is the digest of
    its canonical tree manifest (see :mod:`scalable.artifacts.digests`). ``size_bytes`` is
    the file's size, or the sum of a directory's file sizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    key: str
    kind: ArtifactKind
    digest: str
    size_bytes: int = Field(ge=0)
    created_at: datetime = Field(default_factory=utc_now)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: The version number of this commit of ``key`` (1, 2, ...; ``None`` for a ref not read from a store).
    version: int | None = Field(default=None, ge=1)

    @field_validator("digest", mode="before")
    @classmethod
    def _digest_is_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "digest is required: scalable is stricter than JGCRI scalable 2.0 here, every ref carries a "
                "SHA-256 digest 'sha256:<64 lowercase hex>' (a store computes it on put)"
            )
        return value

    @field_validator("digest")
    @classmethod
    def _digest_is_sha256(cls, value: str) -> str:
        algo, _, hexdigest = value.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            hint = ""
            if algo and not hexdigest and len(algo) == 64:
                hint = f" (scalable names the algorithm: write 'sha256:{algo}')"
            raise ValueError(
                f"digest must look like 'sha256:<64 lowercase hex>', got {value!r}{hint}; scalable is stricter than "
                "JGCRI scalable 2.0 here: every ref carries a SHA-256 digest, prefixed by its algorithm"
            )
        return value

    @field_validator("created_at")
    @classmethod
    def _created_at_is_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @property
    def hexdigest(self) -> str:
        """The digest without its ``sha256:`` prefix."""
        return self.digest.partition(":")[2]

    @property
    def url(self) -> str:
        """A URL that fsspec opens, and so pandas, xarray and dask: ``scalable://<store URI, percent-encoded>/<key>``.

        ``pandas.read_csv(ref.url)`` reads the artifact through its store, verified (see
        :mod:`scalable.artifacts.fsspec_view`); it names the key, so it reads the key's current version.
        """
        from scalable.artifacts.fsspec_view import artifact_url

        return artifact_url(self)

    def to_json(self) -> str:
        """This ref as a JSON object (``ArtifactRef.from_json`` reads it back equal)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ArtifactRef:
        """Parse a ref written by :meth:`to_json`."""
        return cls.model_validate_json(text)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 strings, the kind as its value)."""
        return self.model_dump(mode="json")


__all__ = ["ArtifactKind", "ArtifactRef", "utc_now"]
