"""The ``scalable.yaml`` schema: strict pydantic models (an unknown key is an error).

Fields left out of the file stay ``None`` here; the effective values (built-in defaults,
environment overrides, paths made absolute) are worked out by
:func:`scalable.manifest.resolve_settings`.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from scalable.artifacts.uris import URI_IN_TEXT, redact_uri

#: Names of the providers a target may use, in the order the docs list them.
PROVIDERS = ("local", "dask", "slurm", "pbs", "sge", "lsf")

_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*([kmgtpe]i?)?b?\s*$", re.IGNORECASE)
_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d\d){0,2}$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SECRET_OPTION = re.compile(r"key|secret|token|passw|credential|sas|signature|connection_string", re.IGNORECASE)


# URIs in free text, and `name: value` lines whose name looks secret (for snapshots of the file).
_SECRET_WORDS = r"(?:key|secret|token|passw|credential|sas|signature|connection_string)"
# `name: value` (block or flow style) whose name looks secret; the value ends at a comma, bracket or comment.
_SECRET_VALUE = re.compile(
    r"((?:^|(?<=[\s{,]))[\"']?[\w.-]*" + _SECRET_WORDS + r"[\w.-]*[\"']?[ \t]*:[ \t]+)"
    r"('[^'\n]*'|\"[^\"\n]*\"|[^\s,{}\[\]#'\"][^,{}\[\]#\n]*?)(?=[ \t]*(?:[,}\]#]|$))",
    re.IGNORECASE | re.MULTILINE,
)


def _redact_uri_safely(uri: str) -> str:
    if "@" not in uri and "?" not in uri:
        return uri
    try:
        return redact_uri(uri)
    except ValueError:
        return uri.split("://", 1)[0] + "://***"


def _size(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '4GiB' or '500MB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, str) and _SIZE.match(value):
        return value.strip()
    raise ValueError(f"expected a size such as '4GiB' or '500MB', or a number of bytes, got {value!r}")


def _memory_limit(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, float) and not isinstance(value, bool):
        if 0 < value <= 1:
            return value
        raise ValueError(f"a fraction of the machine's memory must be in (0, 1], got {value}")
    try:
        return _size(value)
    except ValueError:
        raise ValueError(
            f"expected 'auto', a size such as '4GiB', a fraction such as 0.5, or 0 for no limit, got {value!r}"
        ) from None


def _walltime(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _WALLTIME.match(value.strip()):
        return value.strip()
    raise ValueError(f"expected a walltime such as '01:30:00' or '2-00:00:00', got {value!r}")


#: A size: a number of bytes or a string such as ``"4GiB"`` (dask's ``parse_bytes`` reads it).
ByteSize = Annotated[int | str, BeforeValidator(_size)]
#: LocalCluster's ``memory_limit``: ``"auto"``, a size, a fraction of the machine's memory, or 0 for none.
MemoryLimit = Annotated[int | float | str, BeforeValidator(_memory_limit)]
#: A batch walltime: ``[days-]hours[:minutes[:seconds]]``, as the schedulers read it.
Walltime = Annotated[str, BeforeValidator(_walltime)]


def _drop_empty(options: dict[str, Any]) -> dict[str, Any]:
    """Leave out options whose value is empty, so ``${VAR:-}`` means "only when VAR is set"."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, dict):
            value = _drop_empty(value)
        if value is None or value == "":
            continue
        out[name] = value
    return out


def mask_options(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of storage or cluster options fit to print: secret-looking values become ``***``."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, dict):
            out[name] = mask_options(value)
        elif _SECRET_OPTION.search(str(name)):
            out[name] = "***"
        else:
            out[name] = value
    return out


class _Model(BaseModel):
    # Numbers where a string belongs (an account "12345") are read as strings.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_is_default(cls, data: Any) -> Any:
        # `targets:` with every entry commented out reads as null: treat it as empty, not as an error.
        if isinstance(data, dict):
            return {
                key: value
                for key, value in data.items()
                if value is not None or key not in cls.model_fields or cls.model_fields[key].default_factory is None
            }
        return data


class Project(_Model):
    """``project``: where a project's artifacts and cache go."""

    name: str | None = Field(None, description="A name for the project, recorded with each run.")
    default_storage: str | None = Field(
        None,
        description="Where artifacts go: a path, file://, s3://bucket/prefix, gs://..., az://... "
        "Default ./artifacts. SCALABLE_DEFAULT_STORAGE overrides it.",
    )
    local_cache: str | None = Field(
        None,
        description="Folder of the cache's fast local tier. Default ./.scalable/cache. "
        "SCALABLE_CACHE_DIR overrides it.",
    )
    cache_remote: str | None = Field(
        None,
        description="Artifact store URI of the cache's shared remote tier; unset means no remote tier. "
        "SCALABLE_CACHE_REMOTE overrides it.",
    )
    local_mirror: str | None = Field(
        None,
        description="Folder of the local mirror that store.fetch() fills with verified, read-only copies "
        "of artifacts, keyed by digest. Default: the user cache folder. SCALABLE_MIRROR_DIR overrides it.",
    )
    mirror_max_bytes: str | None = Field(
        None,
        description="Size bound of the local mirror (bytes, or 50GiB, 500MB): least recently used entries "
        "that no process is using are evicted. Default: no bound. SCALABLE_MIRROR_MAX_BYTES overrides it.",
    )
    storage_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="fsspec storage options by URI prefix ('s3://', 's3://bucket'); "
        "the longest matching prefix applies. Empty values are left out.",
    )
    transport: Literal["native", "fsspec"] | None = Field(
        None,
        description="How s3:// and az:// stores move bytes: 'native' (obstore, the default) or 'fsspec' "
        "(s3fs/adlfs). A prefix's storage_options may set transport too; SCALABLE_TRANSPORT overrides this.",
    )

    @field_validator(
        "name", "default_storage", "local_cache", "local_mirror", "mirror_max_bytes", "cache_remote", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("mirror_max_bytes")
    @classmethod
    def _mirror_bound_is_a_size(cls, value: str | None) -> str | None:
        if value is not None:
            from scalable.cache.config import parse_size

            parse_size(value, "mirror_max_bytes")
        return value

    @field_validator("storage_options", mode="before")
    @classmethod
    def _options_by_prefix(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # A prefix whose options are all commented out reads as null: no options.
            return {prefix: {} if options is None else options for prefix, options in value.items()}
        return value

    @field_validator("storage_options")
    @classmethod
    def _drop_empty_options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for prefix in value:
            if not prefix:
                raise ValueError("a storage_options prefix cannot be empty: use 's3://' for every S3 URI")
        return {prefix: _drop_empty(options) for prefix, options in value.items()}

    def storage_options_for(self, uri: str) -> dict[str, Any]:
        """A copy of the options whose prefix is the longest match for ``uri`` (``{}`` if none).

        A prefix matches whole path segments: ``s3://bucket`` matches ``s3://bucket/x`` but
        not ``s3://bucket2/x``; ``s3://`` matches every S3 URI. Options of shorter matching
        prefixes are not merged in.
        """
        best: tuple[int, dict[str, Any]] | None = None
        for prefix, options in self.storage_options.items():
            if _prefix_matches(prefix, uri):
                length = len(prefix.rstrip("/")) if not prefix.endswith("://") else len(prefix)
                if best is None or length > best[0]:
                    best = (length, options)
        found = copy.deepcopy(best[1]) if best else {}
        # "native" is the factory's default already: only "fsspec" needs saying.
        if self.transport == "fsspec" and "transport" not in found and not os.environ.get("SCALABLE_TRANSPORT"):
            found["transport"] = self.transport
        return found

    # Printing or dumping a project never shows credentials; the attributes keep the real values.
    @field_serializer("default_storage", "local_cache", "cache_remote")
    def _redacted_uri(self, value: str | None) -> str | None:
        return None if value is None else redact_uri(value)

    @field_serializer("storage_options")
    def _masked_options(self, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {redact_uri(prefix): mask_options(options) for prefix, options in value.items()}

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "storage_options":
                value = self._masked_options(value)
            elif isinstance(value, str):
                value = redact_uri(value)
            yield name, value


def _prefix_matches(prefix: str, uri: str) -> bool:
    if prefix.endswith("/"):
        return uri.startswith(prefix) or uri == prefix.rstrip("/")
    return uri == prefix or uri.startswith(prefix + "/")


class _Target(_Model):
    provider: str


class _ClusterTarget(_Target):
    """A target whose session starts a cluster: :attr:`cluster_class` with :meth:`cluster_kwargs`."""

    #: Dotted name of the class that starts this target's Dask cluster.
    cluster_class: ClassVar[str]
    #: Fields that describe the target but are not keyword arguments of the cluster class.
    _not_cluster_kwargs: ClassVar[frozenset[str]] = frozenset({"provider", "cluster_options"})

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :attr:`cluster_class`: the fields that are set, then ``cluster_options``."""
        kwargs = {
            name: copy.deepcopy(getattr(self, name))
            for name in type(self).model_fields
            if name not in self._not_cluster_kwargs and getattr(self, name) not in (None, [], {})
        }
        kwargs.update(copy.deepcopy(getattr(self, "cluster_options", {})))
        return kwargs

    @field_serializer("cluster_options", check_fields=False)
    def _masked_cluster_options(self, value: dict[str, Any]) -> dict[str, Any]:
        return mask_options(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_options(value) if name == "cluster_options" else value


class LocalTarget(_ClusterTarget):
    """``provider: local``: a ``distributed.LocalCluster`` on this machine (its own option names)."""

    provider: Literal["local"] = "local"
    n_workers: NonNegativeInt | None = Field(None, description="Worker processes (LocalCluster n_workers).")
    threads_per_worker: PositiveInt | None = Field(None, description="Threads in each worker.")
    processes: bool | None = Field(None, description="Workers are processes (true) or threads of this process.")
    memory_limit: MemoryLimit | None = Field(
        None, description="Memory per worker: 'auto', a size such as '4GiB', a fraction such as 0.5, or 0 (none)."
    )
    dashboard_address: str | None = Field(
        None, description="Where the dashboard listens, e.g. ':8787', or ':0' for any free port."
    )
    cluster_options: dict[str, Any] = Field(
        default_factory=dict, description="Further LocalCluster keyword arguments, passed as they are."
    )

    cluster_class: ClassVar[str] = "distributed.LocalCluster"


class DaskTarget(_Target):
    """``provider: dask``: an existing Dask scheduler, by address."""

    provider: Literal["dask"] = "dask"
    address: str = Field(min_length=1, description="The scheduler's address, e.g. tcp://scheduler:8786.")


class _BatchTarget(_ClusterTarget):
    """A batch system through dask-jobqueue: one job runs ``processes`` workers on ``cores`` cores."""

    cores: PositiveInt | None = Field(None, description="Cores per job.")
    memory: ByteSize | None = Field(None, description="Memory per job, e.g. '16GB'.")
    processes: PositiveInt | None = Field(None, description="Worker processes per job (cores are split among them).")
    queue: str | None = Field(None, description="Queue or partition to submit to.")
    account: str | None = Field(
        None, description="Account or project charged for the jobs (dask-jobqueue's 'project' on SGE and LSF)."
    )
    walltime: Walltime | None = Field(None, description="Time limit per job, e.g. '01:30:00'.")
    job_name: str | None = Field(None, description="Name of the jobs in the queue.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra scheduler directives, one per line of the job script header."
    )
    job_directives_skip: list[str] = Field(
        default_factory=list, description="Generated directives to leave out (any line containing one of these)."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell commands run before the worker starts (module load ..., source ...)."
    )
    worker_extra_args: list[str] = Field(
        default_factory=list, description="Extra arguments of the dask worker command."
    )
    local_directory: str | None = Field(None, description="Node-local scratch folder for workers' spilled data.")
    log_directory: str | None = Field(None, description="Folder for the jobs' output and error files.")
    interface: str | None = Field(None, description="Network interface the workers use, e.g. 'ib0'.")
    python: str | None = Field(None, description="Python executable on the compute nodes.")
    n_workers: NonNegativeInt | None = Field(None, description="Workers to start (jobs = n_workers / processes).")
    jobs: NonNegativeInt | None = Field(None, description="Jobs to submit at start (instead of n_workers).")
    cluster_options: dict[str, Any] = Field(
        default_factory=dict, description="Further dask-jobqueue keyword arguments, passed as they are."
    )

    _not_cluster_kwargs: ClassVar[frozenset[str]] = frozenset({"provider", "cluster_options", "jobs"})
    #: dask-jobqueue's name for ``account`` on this provider.
    _account_kwarg: ClassVar[str] = "account"

    @model_validator(mode="after")
    def _workers_or_jobs(self) -> _BatchTarget:
        if self.n_workers is not None and self.jobs is not None:
            raise ValueError("give n_workers or jobs, not both (jobs = n_workers / processes)")
        return self

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :attr:`cluster_class`; ``jobs`` is for ``cluster.scale(jobs=...)``."""
        kwargs = super().cluster_kwargs()
        if "account" in kwargs and self._account_kwarg != "account":
            kwargs[self._account_kwarg] = kwargs.pop("account")
        return kwargs


class SlurmTarget(_BatchTarget):
    """``provider: slurm``: ``dask_jobqueue.SLURMCluster``."""

    provider: Literal["slurm"] = "slurm"
    job_cpu: PositiveInt | None = Field(None, description="CPUs to request per job, if not cores (--cpus-per-task).")
    job_mem: ByteSize | None = Field(None, description="Memory to request per job, if not memory (--mem).")

    cluster_class: ClassVar[str] = "dask_jobqueue.SLURMCluster"


class PBSTarget(_BatchTarget):
    """``provider: pbs``: ``dask_jobqueue.PBSCluster``."""

    provider: Literal["pbs"] = "pbs"
    resource_spec: str | None = Field(None, description="The -l resource request, e.g. 'select=1:ncpus=24:mem=100GB'.")

    cluster_class: ClassVar[str] = "dask_jobqueue.PBSCluster"


class SGETarget(_BatchTarget):
    """``provider: sge``: ``dask_jobqueue.SGECluster``."""

    provider: Literal["sge"] = "sge"
    resource_spec: str | None = Field(None, description="The -l resource request, e.g. 'h_vmem=16G'.")

    cluster_class: ClassVar[str] = "dask_jobqueue.SGECluster"
    _account_kwarg: ClassVar[str] = "project"


class LSFTarget(_BatchTarget):
    """``provider: lsf``: ``dask_jobqueue.LSFCluster``."""

    provider: Literal["lsf"] = "lsf"
    ncpus: PositiveInt | None = Field(None, description="CPUs to request per job, if not cores (-n).")
    mem: NonNegativeInt | None = Field(None, description="Memory to request per job in bytes, if not memory (-M).")
    use_stdin: bool | None = Field(None, description="Submit with 'bsub < script' rather than 'bsub script'.")

    cluster_class: ClassVar[str] = "dask_jobqueue.LSFCluster"
    _account_kwarg: ClassVar[str] = "project"


#: One target: the ``provider`` field picks the model.
Target = Annotated[
    LocalTarget | DaskTarget | SlurmTarget | PBSTarget | SGETarget | LSFTarget,
    Field(discriminator="provider"),
]

#: The model of each provider.
TARGET_MODELS: dict[str, type[_Target]] = {
    "local": LocalTarget,
    "dask": DaskTarget,
    "slurm": SlurmTarget,
    "pbs": PBSTarget,
    "sge": SGETarget,
    "lsf": LSFTarget,
}


def _check_target_names(names: dict[str, Any]) -> None:
    for name in names:
        if not _TARGET_NAME.match(str(name)):
            raise ValueError(f"target name {name!r} must start with a letter or digit and hold only [A-Za-z0-9_.-]")


class Overlay(_Model):
    """A named partial manifest, deep-merged onto the base when selected.

    Mappings merge key by key; lists and scalars replace. A target whose ``provider``
    changes is replaced whole rather than merged.
    """

    project: Project | None = Field(None, description="Project fields to change.")
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Targets to add, or fields of existing targets to change."
    )

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        _check_target_names(value)
        return value


class Manifest(_Model):
    """A whole ``scalable.yaml``: version, project, targets and overlays.

    A manifest returned by :func:`scalable.manifest.load_manifest` has its selected
    overlay already merged in (:attr:`overlay` names it); ``overlays`` keeps all of them as
    written.
    """

    version: Literal[1] = Field(description="The manifest format version: 1.")
    project: Project = Field(default_factory=Project, description="Where artifacts and the cache go.")
    targets: dict[str, Target] = Field(
        default_factory=dict,
        description="Where tasks run, by name. 'local' (a LocalCluster with Dask's defaults) exists "
        "even when not listed.",
    )
    overlays: dict[str, Overlay] = Field(
        default_factory=dict, description="Named partial manifests merged onto this one when selected."
    )

    _source: Any = PrivateAttr(None)  # load._Source: file name, path and line of every field
    _overlay: str | None = PrivateAttr(None)

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        if value in (1, "1") and not isinstance(value, bool):
            return 1
        raise ValueError(f"this scalable reads manifest version 1, the file says {value!r}: write 'version: 1'")

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_target_names(value)
        return value

    @property
    def path(self) -> Path | None:
        """The absolute :class:`~pathlib.Path` of the file this came from, or ``None``."""
        return None if self._source is None else self._source.path

    @property
    def text(self) -> str | None:
        """The file as written (before ``${VAR}`` expansion), or ``None`` for the built-in defaults."""
        return None if self._source is None else self._source.text

    def snapshot_text(self) -> str | None:
        """:attr:`text` fit to keep with a run: credentials in URIs and secret-looking values masked.

        ``${VAR}`` references are kept as written (they name a variable, not its value).
        """
        text = self.text
        if text is None:
            return None
        text = URI_IN_TEXT.sub(lambda m: _redact_uri_safely(m.group(0)), text)
        return _SECRET_VALUE.sub(lambda m: m.group(0) if "${" in m.group(2) else m.group(1) + "'***'", text)

    @property
    def overlay(self) -> str | None:
        """The name of the overlay merged in, or ``None``."""
        return self._overlay

    def line_of(self, *field: str) -> int | None:
        """The line in the file where ``field`` (e.g. ``"targets", "hpc"``) is written, if known."""
        return None if self._source is None else self._source.line_of(tuple(field))

    def get_target(self, name: str) -> LocalTarget | DaskTarget | SlurmTarget | PBSTarget | SGETarget | LSFTarget:
        """The target called ``name``; ``local`` always exists (Dask's defaults unless listed).

        Raises :class:`~scalable.manifest.ManifestError` naming the file and the targets it
        has, with a did-you-mean hint.
        """
        if name in self.targets:
            return self.targets[name]
        if name == "local":
            return LocalTarget()
        from scalable.manifest.problems import unknown_name_error

        raise unknown_name_error(self, "targets", "target", name, [*self.targets, "local"])

    @classmethod
    def builtin(cls) -> Manifest:
        """The manifest used when there is no file: every setting at its built-in default."""
        return cls(version=1)


#: Where the schema says it follows (pydantic writes JSON Schema draft 2020-12).
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_ENV_REFERENCE = {
    "type": "string",
    "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-.*)?\}$",
    "description": "A ${VAR} or ${VAR:-default} reference, expanded when the manifest is loaded.",
}
_NON_STRING = {"integer", "number", "boolean"}


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``scalable.yaml`` as written, for editors and validators (``jsonschema``).

    A number or boolean field also accepts a whole-value ``${VAR}`` / ``${VAR:-default}``
    reference, since its value is known only when the file is loaded.
    """
    schema = Manifest.model_json_schema(mode="validation")
    schema["$defs"]["EnvReference"] = dict(_ENV_REFERENCE)
    for definition in [schema, *schema["$defs"].values()]:
        for name, field_schema in definition.get("properties", {}).items():
            if name not in ("version", "provider") and _holds_only_non_strings(field_schema):
                definition["properties"][name] = _or_reference(field_schema)
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "scalable.yaml"}


def _holds_only_non_strings(field_schema: dict[str, Any]) -> bool:
    options = field_schema.get("anyOf", [field_schema])
    types = {option.get("type") for option in options}
    return bool(types & _NON_STRING) and "string" not in types


def _or_reference(field_schema: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in field_schema.items() if k in ("title", "description", "default")}
    rest = {k: v for k, v in field_schema.items() if k not in meta}
    options = rest["anyOf"] if list(rest) == ["anyOf"] else [rest]
    return {**meta, "anyOf": [*options, {"$ref": "#/$defs/EnvReference"}]}


__all__ = [
    "JSON_SCHEMA_DIALECT",
    "PROVIDERS",
    "TARGET_MODELS",
    "ByteSize",
    "DaskTarget",
    "LSFTarget",
    "LocalTarget",
    "Manifest",
    "MemoryLimit",
    "Overlay",
    "PBSTarget",
    "Project",
    "SGETarget",
    "SlurmTarget",
    "Target",
    "Walltime",
    "json_schema",
    "mask_options",
]
