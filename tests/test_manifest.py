"""scalable.yaml: the schema, ${VAR} expansion, overlays, error messages and settings precedence."""

from __future__ import annotations

import os
import pickle
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scalable.errors import ScalableError
from scalable.manifest import (
    ENV_VARS,
    TARGET_MODELS,
    LocalTarget,
    Manifest,
    ManifestError,
    ManifestNotFoundError,
    Overlay,
    Project,
    json_schema,
    load_manifest,
    parse_manifest,
    resolve_settings,
)
from scalable.manifest.expand import ExpansionError, expand

EXAMPLE = Path(__file__).resolve().parents[1] / "scalable.yaml.example"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SCALABLE_* variable from the outside, and a fresh current directory."""
    for name in [*ENV_VARS.values(), "WORKERS", "TEAM_CACHE", "S3_ENDPOINT_URL", "SLURM_ACCOUNT"]:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path: Path, **kwargs: Any) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kwargs)
    return str(info.value)


# --- the example and the JSON schema ---------------------------------------------------------


def test_the_example_loads_and_its_values_arrive() -> None:
    manifest = load_manifest(EXAMPLE)
    assert manifest.project.name == "ensemble-demo"
    assert manifest.project.cache_remote is None  # ${TEAM_CACHE:-} with TEAM_CACHE unset
    assert manifest.targets["local"].n_workers == 2  # ${WORKERS:-2} is a number
    assert manifest.targets["hpc"].walltime == "02:00:00"
    assert manifest.targets["hpc"].account == "my-project"
    assert set(manifest.overlays) == {"cloud", "big-hpc"}
    for name in manifest.overlays:
        load_manifest(EXAMPLE, overlay=name)


def test_the_example_validates_against_the_json_schema_as_written_and_as_loaded() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert [e.message for e in validator.iter_errors(raw)] == []
    loaded = load_manifest(EXAMPLE).model_dump(mode="json", exclude_none=True)
    assert [e.message for e in validator.iter_errors(loaded)] == []


def test_the_json_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    assert not validator.is_valid({"version": 1, "project": {"defualt_storage": "x"}})
    assert not validator.is_valid({"version": 1, "targets": {"t": {"provider": "slurmm"}}})
    assert not validator.is_valid({"version": 1, "targets": {"t": {"provider": "local", "n_workers": "two"}}})
    assert validator.is_valid({"version": 1, "targets": {"t": {"provider": "local", "n_workers": "${N:-2}"}}})


def test_the_example_sets_every_field_of_every_model() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == set(Manifest.model_fields)
    assert set(raw["project"]) == {
        "name",
        "default_storage",
        "local_cache",
        "cache_remote",
        "storage_options",
        "transport",
    }
    targets = raw["targets"].values()
    assert {t["provider"] for t in targets} == set(TARGET_MODELS)
    for provider, model in TARGET_MODELS.items():
        for field in model.model_fields:
            shown = [t for t in targets if field in t and field in TARGET_MODELS[t["provider"]].model_fields]
            assert shown, f"scalable.yaml.example never shows {field!r} of a {provider} target"
    overlay_fields = {key for overlay in raw["overlays"].values() for key in overlay}
    assert overlay_fields == {"project", "targets"}


def test_every_field_has_a_comment_in_the_example() -> None:
    commented: set[str] = set()
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^\s*([A-Za-z_]+):", line)
        if match and ("#" in line or (number and lines[number - 1].strip().startswith("#"))):
            commented.add(match.group(1))
    fields = {*Manifest.model_fields, *Project.model_fields, *Overlay.model_fields}
    for model in TARGET_MODELS.values():
        fields |= set(model.model_fields)
    assert sorted(fields - commented) == []


# --- golden error messages ------------------------------------------------------------------


def test_golden_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scalable.yaml",
        """
        version: 1
        project:
          name: demo
          defualt_storage: ./out
        """,
    )
    assert error_of(path) == f"{path}:4: project.defualt_storage: unknown field; did you mean 'default_storage'?"


def test_golden_wrong_type_and_unknown_option_of_a_target(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scalable.yaml",
        """
        version: 1
        targets:
          hpc:
            provider: slurm
            cores: four
            walltime: 1h
            n_workes: 3
        """,
    )
    assert error_of(path) == "\n".join(
        [
            f"{path}:5: targets.hpc.cores: expected a whole number, got 'four'",
            f"{path}:6: targets.hpc.walltime: expected a walltime such as '01:30:00' or '2-00:00:00', got '1h'",
            f"{path}:7: targets.hpc.n_workes: unknown field; did you mean 'n_workers'?",
        ]
    )


def test_golden_unknown_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scalable.yaml",
        """
        version: 1
        targets:
          gpu:
            provider: slurmm
        """,
    )
    assert error_of(path) == (
        f"{path}:4: targets.gpu.provider: unknown provider 'slurmm'; did you mean 'slurm'? "
        "(providers: local, dask, slurm, pbs, sge, lsf)"
    )


def test_golden_missing_provider(tmp_path: Path) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\ntargets:\n  gpu:\n    n_workers: 2\n")
    assert (
        error_of(path) == f"{path}:3: targets.gpu: a target needs a provider: one of local, dask, slurm, pbs, sge, lsf"
    )


def test_golden_unset_variable(tmp_path: Path) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\nproject:\n  default_storage: s3://${DATA_BUCKET}/runs\n")
    assert error_of(path) == (
        f"{path}:3: project.default_storage: ${{DATA_BUCKET}} is not set: set the environment variable "
        "DATA_BUCKET, or give a default with ${DATA_BUCKET:-value}"
    )


def test_golden_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\nproject:\n  name: demo\n   default_storage: x\n")
    assert error_of(path) == f"{path}:4: invalid YAML: mapping values are not allowed here"


def test_golden_unknown_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\ntargets:\n  hpc:\n    provider: slurm\n")
    monkeypatch.setenv("SCALABLE_TARGET", "hcp")
    with pytest.raises(ManifestError) as info:
        resolve_settings(path)
    assert str(info.value) == (
        f"{path}:2: targets: no target named 'hcp' (chosen by SCALABLE_TARGET); did you mean 'hpc'? "
        "(targets: hpc, local)"
    )


def test_golden_unknown_overlay(tmp_path: Path) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\noverlays:\n  cloud:\n    project: {name: x}\n")
    assert error_of(path, overlay="clod") == (
        f"{path}:2: overlays: no overlay named 'clod'; did you mean 'cloud'? (overlays: cloud)"
    )


def test_errors_are_scalable_errors_and_value_errors_with_structured_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\nproject:\n  name: [1, 2]\n")
    with pytest.raises(ScalableError) as info:
        load_manifest(path)
    error = info.value
    assert isinstance(error, ManifestError) and isinstance(error, ValueError)
    assert error.source == str(path)
    assert [(p.line, p.field) for p in error.problems] == [(3, "project.name")]
    assert "Traceback" not in str(error)
    again = pickle.loads(pickle.dumps(error))  # as it comes back from a Dask worker
    assert type(again) is ManifestError and str(again) == str(error) and again.problems == error.problems
    missing = pickle.loads(pickle.dumps(ManifestNotFoundError("m.yaml", error.problems)))
    assert isinstance(missing, FileNotFoundError) and str(missing) == str(error).replace(str(path), "m.yaml")


@pytest.mark.parametrize(
    "text, line, field, message",
    [
        ("", 1, None, "the manifest is empty: start it with 'version: 1'"),
        ("- 1\n- 2\n", 1, None, "the manifest is a list, not a mapping of fields: start it with 'version: 1'"),
        ("project: {}\n", 1, "version", "required field is missing"),
        ("version: 2\n", 1, "version", "this scalable reads manifest version 1, the file says 2: write 'version: 1'"),
        ("version: 1\nversion: 1\n", 2, "version", "duplicate key (first written at line 1)"),
        ("version: 1\ntargets:\n  a b:\n    provider: local\n", 2, "targets", "target name 'a b' must start"),
        ("version: 1\ntargets:\n  t:\n    provider: dask\n", 3, "targets.t.address", "required field is missing"),
        ("version: 1\ntargets:\n  t: {provider: dask, address: ''}\n", 3, "targets.t.address", "cannot be empty"),
        (
            "version: 1\ntargets:\n  t:\n    provider: slurm\n    jobs: 2\n    n_workers: 4\n",
            3,
            "targets.t",
            "give n_workers or jobs, not both (jobs = n_workers / processes)",
        ),
        (
            "version: 1\ntargets:\n  t:\n    provider: local\n    memory_limit: 5.5\n",
            5,
            "targets.t.memory_limit",
            "a fraction of the machine's memory must be in (0, 1], got 5.5",
        ),
        (
            "version: 1\ntargets:\n  t:\n    provider: pbs\n    job_extra_directives:\n      - ok\n      - {a: 1}\n",
            7,
            "targets.t.job_extra_directives[1]",
            "expected a string, got a mapping",
        ),
        (
            'version: 1\nproject:\n  storage_options:\n    "s3://b":\n      x: 1\n    "s3://c": 3\n',
            6,
            'project.storage_options["s3://c"]',
            "expected a mapping (key: value lines), got 3",
        ),
        ("version: 1\nproject:\n  name: ${BAD NAME}\n", 3, "project.name", "malformed reference '${BAD NAME}'"),
        ("version: 1\nproject:\n  name: ${X:-open\n", 3, "project.name", "unclosed reference"),
        ("version: 1\nbogus: !!python/object:os.system x\n", 2, None, "invalid YAML: could not determine"),
    ],
)
def test_bad_manifests_name_the_line_and_the_field(text: str, line: int, field: str | None, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.yaml", environ={})
    problem = info.value.problems[0]
    assert (problem.line, problem.field) == (line, field), str(info.value)
    assert problem.message.startswith(message), str(info.value)
    assert str(info.value).startswith(f"m.yaml:{line}: ")


def test_every_problem_is_reported_at_once() -> None:
    text = "version: 1\nproject:\n  nam: x\n  local_cache: [1]\ntargets:\n  a: {provider: local, n_workers: -1}\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.yaml", environ={})
    assert [(p.line, p.field) for p in info.value.problems] == [
        (3, "project.nam"),
        (4, "project.local_cache"),
        (6, "targets.a.n_workers"),
    ]


def test_a_missing_file_named_explicitly_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ManifestNotFoundError) as info:
        load_manifest(tmp_path / "nope.yaml")
    assert isinstance(info.value, FileNotFoundError)
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: manifest file not found: check the path, or create it"
    monkeypatch.setenv("SCALABLE_MANIFEST", str(tmp_path / "gone.yaml"))
    with pytest.raises(ManifestNotFoundError, match=r"gone\.yaml: manifest file not found \(from SCALABLE_MANIFEST\)"):
        load_manifest()


def test_secrets_in_bad_values_are_not_echoed() -> None:
    text = "version: 1\ntargets:\n  t:\n    provider: slurm\n    cores: s3://me:hunter2@host/x?sig=abc\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, environ={})
    assert "hunter2" not in str(info.value) and "abc" not in str(info.value)


# --- ${VAR} expansion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("${A}", {"A": "x"}, "x"),
        ("s3://${B}/runs", {"B": "bucket"}, "s3://bucket/runs"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),  # empty counts as unset, as in the shell
        ("${A}", {"A": ""}, ""),
        ("${A:-${B:-x}}", {"B": "b"}, "b"),
        ("${A:-${B:-x}}", {}, "x"),
        ("${A:-${UNSET}}", {"A": "a"}, "a"),  # a default is expanded only when used
        ("price: $$5 and $HOME", {}, "price: $5 and $HOME"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("${A}", {"A": "${B}"}, "${B}"),  # a value is never expanded again
        ("${A:-}", {}, ""),
        ("ends with $", {}, "ends with $"),
    ],
)
def test_expansion(text: str, env: dict[str, str], expected: str) -> None:
    assert expand(text, env) == expected


@pytest.mark.parametrize("text", ["${A}", "${}", "${1A}", "${A:-x", "${A-x}", "${A:?x}"])
def test_expansion_errors(text: str) -> None:
    with pytest.raises(ExpansionError):
        expand(text, {})


@given(st.text().filter(lambda s: "$" not in s))
def test_text_without_a_dollar_is_unchanged(text: str) -> None:
    assert expand(text, {"A": "x"}) == text


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(), st.text())
def test_a_reference_expands_to_exactly_the_value(name: str, value: str, default: str) -> None:
    assert expand(f"<${{{name}}}>", {name: value}) == f"<{value}>"
    if "$" not in default and "}" not in default:
        assert expand(f"${{{name}:-{default}}}", {}) == default


def test_expanded_plain_values_take_their_type_and_quoted_ones_stay_strings() -> None:
    text = textwrap.dedent(
        """
        version: 1
        project:
          name: "${N}"
          cache_remote: ${UNSET:-}
        targets:
          t:
            provider: local
            n_workers: ${N}
            processes: ${P:-false}
        """
    )
    manifest = parse_manifest(text, environ={"N": "3"})
    assert manifest.project.name == "3"
    assert manifest.project.cache_remote is None
    assert manifest.targets["t"].n_workers == 3
    assert manifest.targets["t"].processes is False


def test_yaml_1_2_scalars_keep_times_zero_padded_numbers_and_words_as_strings() -> None:
    text = textwrap.dedent(
        """
        version: 1
        project:
          name: no
        targets:
          t:
            provider: slurm
            walltime: 01:30:00
            account: 0123
            queue: on
            job_name: 2024-01-01
        """
    )
    target = parse_manifest(text, environ={}).targets["t"]
    assert (target.walltime, target.account, target.queue, target.job_name) == ("01:30:00", "0123", "on", "2024-01-01")


def test_anchors_and_merge_keys_work_and_report_lines() -> None:
    text = textwrap.dedent(
        """
        version: 1
        targets:
          base: &batch
            provider: slurm
            cores: 8
          big:
            <<: *batch
            cores: 32
          bad:
            <<: *batch
            cores: lots
        """
    ).lstrip()
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, environ={})
    assert [(p.line, p.field) for p in info.value.problems] == [(11, "targets.bad.cores")]
    fixed = parse_manifest(text.replace("lots", "4"), environ={})
    assert (fixed.targets["big"].cores, fixed.targets["big"].provider, fixed.targets["bad"].cores) == (32, "slurm", 4)


# --- overlays --------------------------------------------------------------------------------

OVERLAID = """
version: 1
project:
  name: demo
  default_storage: ./artifacts
targets:
  hpc:
    provider: slurm
    cores: 8
    job_extra_directives: ["--a", "--b"]
  local:
    provider: local
    n_workers: 2
overlays:
  big:
    project:
      default_storage: s3://bucket/runs
    targets:
      hpc:
        cores: 32
        job_extra_directives: ["--c"]
  remote:
    targets:
      local:
        provider: dask
        address: tcp://10.0.0.1:8786
  broken:
    targets:
      hpc:
        corse: 4
  needs-var:
    project:
      cache_remote: ${TEAM_CACHE}
"""
OVERLAID_OK = OVERLAID.replace("corse", "cores")


def test_an_overlay_deep_merges_mappings_and_replaces_lists() -> None:
    manifest = parse_manifest(OVERLAID_OK, environ={"TEAM_CACHE": "s3://c"}, overlay="big")
    assert manifest.overlay == "big"
    assert manifest.project.name == "demo"
    assert manifest.project.default_storage == "s3://bucket/runs"
    assert manifest.targets["hpc"].cores == 32
    assert manifest.targets["hpc"].job_extra_directives == ["--c"]
    assert set(manifest.overlays) == {"big", "remote", "broken", "needs-var"}


def test_an_overlay_that_changes_a_provider_replaces_the_target() -> None:
    manifest = parse_manifest(OVERLAID_OK, environ={"TEAM_CACHE": "x"}, overlay="remote")
    assert manifest.targets["local"].provider == "dask"
    assert manifest.targets["local"].address == "tcp://10.0.0.1:8786"


def test_a_broken_overlay_is_reported_at_its_own_line_even_when_not_selected() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(OVERLAID, source="m.yaml", environ={"TEAM_CACHE": "x"})
    assert str(info.value) == (
        "m.yaml:30: targets.hpc.corse: unknown field; did you mean 'cores'? (with overlay 'broken')"
    )


def test_an_unset_variable_in_an_overlay_matters_only_when_it_is_selected() -> None:
    text = OVERLAID_OK
    assert parse_manifest(text, environ={}).overlay is None
    with pytest.raises(
        ManifestError, match=r":33: overlays\.needs-var\.project\.cache_remote: \$\{TEAM_CACHE\} is not"
    ):
        parse_manifest(text, environ={}, overlay="needs-var")
    assert parse_manifest(text, environ={"TEAM_CACHE": "s3://c"}, overlay="needs-var").project.cache_remote == "s3://c"


# --- storage options -------------------------------------------------------------------------


def test_storage_options_by_longest_prefix_on_segment_boundaries() -> None:
    text = textwrap.dedent(
        """
        version: 1
        project:
          storage_options:
            "s3://": {endpoint_url: "http://all"}
            "s3://data": {endpoint_url: "http://data", anon: true}
            "s3://data/private/":
              endpoint_url: "http://private"
              key: ${KEY:-}
            "gs://":
        """
    )
    project = parse_manifest(text, environ={}).project
    assert project.storage_options_for("s3://other/x") == {"endpoint_url": "http://all"}
    assert project.storage_options_for("s3://data") == {"endpoint_url": "http://data", "anon": True}
    assert project.storage_options_for("s3://data/x.csv") == {"endpoint_url": "http://data", "anon": True}
    assert project.storage_options_for("s3://data2/x") == {"endpoint_url": "http://all"}
    assert project.storage_options_for("s3://data/private/a") == {"endpoint_url": "http://private"}  # key: empty
    assert project.storage_options_for("s3://data/private") == {"endpoint_url": "http://private"}
    assert project.storage_options_for("gs://b/k") == {}
    assert project.storage_options_for("az://c/k") == {}
    project.storage_options_for("s3://data")["anon"] = False  # a copy: the manifest does not change
    assert project.storage_options_for("s3://data")["anon"] is True


# --- targets ---------------------------------------------------------------------------------


def test_cluster_kwargs_use_each_providers_own_names() -> None:
    manifest = load_manifest(EXAMPLE)
    local = manifest.targets["local"]
    assert local.cluster_class == "distributed.LocalCluster"
    assert local.cluster_kwargs() == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "memory_limit": "4GiB",
        "dashboard_address": ":0",
    }
    hpc = manifest.targets["hpc"]
    assert hpc.cluster_class == "dask_jobqueue.SLURMCluster"
    assert hpc.cluster_kwargs()["account"] == "my-project"
    assert "jobs" not in hpc.cluster_kwargs() and hpc.jobs == 2
    sge = parse_manifest("version: 1\ntargets:\n  s: {provider: sge, account: geo, cluster_options: {shebang: x}}\n")
    assert sge.targets["s"].cluster_kwargs() == {"project": "geo", "shebang": "x"}
    assert manifest.get_target("shared").address == "tcp://127.0.0.1:8786"


def test_local_always_exists_and_other_unknown_targets_are_errors() -> None:
    assert Manifest.builtin().get_target("local") == LocalTarget()
    with pytest.raises(ManifestError) as info:
        Manifest.builtin().get_target("gpu")
    assert str(info.value) == "(no manifest file): targets: no target named 'gpu' (targets: local)"


# --- settings --------------------------------------------------------------------------------

MANIFEST_WITH_EVERYTHING = """
version: 1
project:
  default_storage: ./from-manifest
  local_cache: ./cache-from-manifest
  cache_remote: s3://manifest-cache
targets:
  hpc: {provider: slurm, cores: 4}
  other: {provider: local}
"""


@pytest.mark.parametrize(
    "setting, var, argument, env_value, manifest_value, default",
    [
        ("target_name", "SCALABLE_TARGET", "other", "hpc", None, "local"),
        ("default_storage", "SCALABLE_DEFAULT_STORAGE", "s3://arg", "s3://env", "<m>/from-manifest", "<cwd>/artifacts"),
        ("local_cache", "SCALABLE_CACHE_DIR", "/arg", "/env", "<m>/cache-from-manifest", "<cwd>/.scalable/cache"),
        ("cache_remote", "SCALABLE_CACHE_REMOTE", "s3://arg", "s3://env", "s3://manifest-cache", None),
        ("runs_dir", "SCALABLE_RUNS_DIR", "/arg", "/env", None, "<cwd>/.scalable/runs"),
    ],
)
def test_precedence_argument_then_environment_then_manifest_then_default(
    setting: str,
    var: str,
    argument: str,
    env_value: str,
    manifest_value: str | None,
    default: str | None,
    tmp_path: Path,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest_dir = tmp_path / "project"
    path = write(manifest_dir / "scalable.yaml", MANIFEST_WITH_EVERYTHING)
    keyword = {"target_name": "target"}.get(setting, setting)

    def value(settings: Any) -> str | None:
        got = getattr(settings, setting)
        return None if got is None else str(got)

    def expect(text: str | None) -> str | None:
        return None if text is None else text.replace("<m>", str(manifest_dir)).replace("<cwd>", str(clean_env))

    assert value(resolve_settings(None)) == expect(default)
    assert resolve_settings(None).sources[setting.removesuffix("_name")] == "default"
    if manifest_value is not None:
        assert value(resolve_settings(path)) == expect(manifest_value)
    monkeypatch.setenv(var, env_value)  # read at call time, not import time
    assert value(resolve_settings(path)) == env_value
    assert resolve_settings(path).sources[setting.removesuffix("_name")] == var
    assert value(resolve_settings(path, **{keyword: argument})) == argument
    assert resolve_settings(path, **{keyword: argument}).sources[setting.removesuffix("_name")] == "argument"
    monkeypatch.setenv(var, "")  # empty is unset
    fallback = manifest_value if manifest_value is not None else default
    assert value(resolve_settings(path)) == expect(fallback and fallback.replace("<cwd>", "<m>"))


def test_scalable_manifest_picks_the_file_and_a_missing_default_means_builtin_defaults(
    tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = resolve_settings()
    assert settings.manifest_path is None and settings.manifest == Manifest.builtin()
    assert settings.target == LocalTarget()
    write(clean_env / "scalable.yaml", "version: 1\nproject: {name: from-cwd}\n")
    assert load_manifest().project.name == "from-cwd"
    other = write(tmp_path / "elsewhere" / "m.yaml", "version: 1\nproject: {name: from-env}\n")
    monkeypatch.setenv("SCALABLE_MANIFEST", str(other))
    assert load_manifest().project.name == "from-env"
    assert resolve_settings().manifest_path == other


def test_default_storage_from_the_environment_overrides_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "scalable.yaml", "version: 1\nproject:\n  default_storage: ./local\n")
    monkeypatch.setenv("SCALABLE_DEFAULT_STORAGE", "s3://team-bucket/runs")
    settings = resolve_settings(path)
    assert settings.default_storage == "s3://team-bucket/runs"
    assert settings.sources["default_storage"] == "SCALABLE_DEFAULT_STORAGE"


def test_cache_remote_off_turns_the_manifests_remote_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "scalable.yaml", MANIFEST_WITH_EVERYTHING)
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE", "off")
    assert resolve_settings(path).cache_remote is None
    monkeypatch.delenv("SCALABLE_CACHE_REMOTE")
    assert resolve_settings(path, cache_remote="off").cache_remote is None


def test_relative_paths_follow_their_source(tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "project" / "scalable.yaml", "version: 1\nproject:\n  default_storage: ~/x\n")
    settings = resolve_settings(path)
    assert settings.default_storage == os.path.expanduser("~/x")
    assert settings.runs_dir == tmp_path / "project" / ".scalable" / "runs"  # defaults sit by the manifest
    monkeypatch.setenv("SCALABLE_CACHE_DIR", "rel/cache")
    assert resolve_settings(path).local_cache == clean_env / "rel" / "cache"  # the environment: the current dir
    assert resolve_settings(path, default_storage="file:///data").default_storage == "file:///data"


def test_the_cache_secret_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path / "scalable.yaml",
        """
        version: 1
        project:
          cache_remote: s3://user:hunter3@host/cache?X-Amz-Signature=sig4
          storage_options:
            "s3://": {key: AKIA5, secret: hunter5, endpoint_url: "http://x"}
        targets:
          t: {provider: local, cluster_options: {security_token: hunter6}}
        """,
    )
    monkeypatch.setenv("SCALABLE_CACHE_SECRET", "hunter2")
    settings = resolve_settings(path, target="t")
    assert settings.cache_secret is not None and settings.cache_secret.get_secret_value() == "hunter2"
    assert settings.storage_options_for("s3://b")["secret"] == "hunter5"  # usable, just not printed
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.manifest)):
        for secret in ("hunter2", "hunter3", "sig4", "AKIA5", "hunter5", "hunter6"):
            assert secret not in shown
    assert "http://x" in repr(settings)
    with pytest.raises(ValidationError):
        settings.cache_secret = None  # type: ignore[misc]  # frozen: a session cannot leak it by mistake


def test_the_snapshot_of_the_file_masks_secrets_and_still_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scalable.yaml",
        """
        version: 1
        project:
          cache_remote: s3://user:hunter3@host/cache?X-Amz-Signature=sig4  # the team cache
          storage_options:
            "s3://monkey-data":
              key: AKIA5
              secret: "hunter5"   # do not do this
              token: ${S3_TOKEN:-}
              client_kwargs: {aws_secret_access_key: hunter6, region_name: eu-west-1}
        """,
    )
    settings = resolve_settings(path)
    snapshot = settings.manifest_text
    assert snapshot is not None
    for secret in ("hunter3", "sig4", "AKIA5", "hunter5", "hunter6"):
        assert secret not in snapshot
    assert "token: ${S3_TOKEN:-}" in snapshot and "# the team cache" in snapshot and "# do not do this" in snapshot
    again = parse_manifest(snapshot, environ={}).project
    assert again.storage_options["s3://monkey-data"]["client_kwargs"] == {
        "aws_secret_access_key": "***",
        "region_name": "eu-west-1",
    }
    assert resolve_settings(None).manifest_text is None  # no file, no snapshot


def test_target_options_and_cache_settings_for_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_CACHE_SECRET", "hunter2")
    settings = resolve_settings(EXAMPLE, target="hpc", overlay="cloud")
    options = settings.target_options()
    assert options["jobs"] == 2 and options["cores"] == 16 and options["account"] == "my-project"
    assert resolve_settings(EXAMPLE, target="shared").target_options() == {"address": "tcp://127.0.0.1:8786"}
    assert settings.cache_settings() == {
        "local_dir": str(EXAMPLE.parent / ".scalable" / "cache"),
        "remote": "s3://shared-results/cache",
        "remote_options": {"anon": False, "client_kwargs": {"region_name": "eu-west-1"}},
        "secret": "hunter2",
    }
