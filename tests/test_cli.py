"""The ``scalable`` command's store, cache and manifest commands, run in-process through ``main(argv)``.

What a user sees is asserted: stdout, the one ``error:`` line on stderr, and the exit code
(0 ok, 1 failure, 2 usage). Real subprocesses, local and S3, are in ``test_cli_subprocess.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from scalable.cli.app import main
from scalable.cli.cache_cmds import parse_duration
from scalable.cli.locate import open_store, parse_artifact_uri
from scalable.errors import ArtifactNotFoundError, InvalidKeyError, UnsupportedURIError

#: Variables that would make a test depend on the machine it runs on.
ISOLATE = (
    "SCALABLE_MANIFEST",
    "SCALABLE_DEFAULT_STORAGE",
    "SCALABLE_CACHE_DIR",
    "SCALABLE_CACHE_REMOTE",
    "SCALABLE_CACHE_SECRET",
    "SCALABLE_CACHE_SIZE_LIMIT",
    "SCALABLE_TARGET",
    "SCALABLE_RUNS_DIR",
    "SCALABLE_DEBUG",
)


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """``cli("put", "a.txt", "./st#a")`` in an empty working directory with no manifest."""
    monkeypatch.chdir(tmp_path)
    for name in ISOLATE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, as under CI

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A file ``a.txt`` and a folder ``d`` in the working directory."""
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_bytes(b"x" * 1500)
    (tmp_path / "d" / "sub" / "y.txt").write_bytes(b"y")
    return tmp_path


def one_error_line(err: str) -> str:
    """The stderr of a failure: exactly one line, ``error: ...``, and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def flip_a_byte(store_root: Path, key: str) -> Path:
    """Damage the stored object of ``key`` (a file or blob) under the store's ``.scalable/objects``."""
    from scalable.artifacts.local import LocalArtifactStore

    record = LocalArtifactStore(store_root)._read_record(key)
    assert record is not None
    obj = store_root / record.object
    data = bytearray(obj.read_bytes())
    data[0] ^= 0xFF
    obj.write_bytes(bytes(data))
    return obj


# ------------------------------------------------------------------ the URI parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("./st#runs/a.csv", ("./st", "runs/a.csv")),
        ("s3://bucket/prefix#runs/a.csv", ("s3://bucket/prefix", "runs/a.csv")),
        ("#runs/a.csv", ("", "runs/a.csv")),
        ("./st", ("./st", "")),
        ("./st#", ("./st", "")),
        ("#", ("", "")),
        ("./st#runs/", ("./st", "runs/")),
        ("./st#a#b", ("./st", "a#b")),
        ("file:///tmp/st#k", ("file:///tmp/st", "k")),
    ],
)
def test_parse_artifact_uri(text: str, expected: tuple[str, str]) -> None:
    assert parse_artifact_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "it is empty"),
        ("  ", "it is empty"),
        (" ./st#a", "whitespace"),
        ("s3:/bucket#k", "looks like a scheme without '://'"),
        ("s3://#k", "names no bucket"),
        ("./st#a//b", "empty path segments"),
        ("./st#../up", "'..' segments"),
        ("./st#.scalable/refs/x", "reserved"),
    ],
)
def test_parse_artifact_uri_refuses_with_the_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(UnsupportedURIError) as info:
        parse_artifact_uri(text)
    message = str(info.value)
    assert why in message
    assert "STORE#KEY" in message and "\n" not in message


def test_open_store_needs_a_key_and_does_not_create_a_missing_local_store(cli: Cli, tmp_path: Path, work: Path) -> None:
    with pytest.raises(UnsupportedURIError, match="names a store but no artifact"):
        open_store("./st", need_key=True)
    with pytest.raises(InvalidKeyError):
        open_store("./st#runs/", need_key=True)
    with pytest.raises(ArtifactNotFoundError, match="no artifact store at .*st: the folder does not exist"):
        open_store("./st#a", need_key=True)
    assert not (tmp_path / "st").exists()
    with pytest.raises(ArtifactNotFoundError, match="is not an artifact store"):
        open_store("./d", need_key=False)  # an ordinary folder is not made into a store
    assert not (tmp_path / "d" / ".scalable").exists()
    store, key = open_store("./st#runs/a.txt", need_key=True, create=True)
    assert key == "runs/a.txt" and store.uri == (tmp_path / "st").as_uri()


def test_the_default_store_comes_from_the_manifest_or_the_environment(cli: Cli, tmp_path: Path, work: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "scalable.yaml").write_text("version: 1\nproject:\n  default_storage: ./shared\n")
    store, _ = open_store("#k", need_key=True, create=True)  # no manifest here: ./artifacts
    assert store.uri == (tmp_path / "artifacts").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALABLE_MANIFEST", str(tmp_path / "proj" / "scalable.yaml"))
        store, _ = open_store("#k", need_key=True, create=True)
        assert store.uri == (tmp_path / "proj" / "shared").as_uri()  # relative to the manifest's folder
        assert cli("put", "a.txt", "#runs/a.txt", "-q").code == 0
        assert cli("ls", "#runs/").out == "runs/a.txt\n"
        mp.setenv("SCALABLE_DEFAULT_STORAGE", str(tmp_path / "env-store"))
        assert cli("put", "a.txt", "#b", "-q").code == 0
    assert (tmp_path / "env-store" / ".scalable" / "refs" / "b").is_file()


# ------------------------------------------------------------------ put / get / ls / info / rm


def test_put_prints_the_ref(cli: Cli, work: Path) -> None:
    r = cli("put", "a.txt", "./st#runs/a.txt")
    assert r.code == 0, r.err
    digest = "sha256:" + hashlib.sha256(b"alpha\n").hexdigest()
    assert f"digest   {digest}" in r.out
    assert f"uri      {(work / 'st').as_uri()}/runs/a.txt" in r.out
    assert "size     6 bytes" in r.out
    assert r.err == ""

    r = cli("put", "a.txt", "./st#runs/b.txt", "--quiet")
    assert (r.code, r.out) == (0, digest + "\n")

    r = cli("put", "a.txt", "./st#runs/c.txt", "--json", "--meta", "owner=alice", "--meta", "note=a=b")
    doc = json.loads(r.out)
    assert doc["digest"] == digest and doc["size_bytes"] == 6 and doc["kind"] == "file"
    assert doc["metadata"] == {"owner": "alice", "note": "a=b"}
    assert doc["store"] == (work / "st").as_uri()


def test_put_a_directory_packed_with_metadata_then_info(cli: Cli, work: Path) -> None:
    r = cli("put", "d", "./st#runs/d", "--pack", "--meta", "owner=bob", "--json")
    assert r.code == 0, r.err
    put = json.loads(r.out)
    assert put["kind"] == "dir" and put["size_bytes"] == 1501
    r = cli("info", "./st#runs/d")
    assert r.code == 0
    assert "kind     dir" in r.out and "meta     owner=bob" in r.out
    assert "size     1.5 kB (1501 bytes)" in r.out
    assert json.loads(cli("info", "./st#runs/d", "--json").out)["digest"] == put["digest"]


def test_put_refusals(cli: Cli, work: Path) -> None:
    r = cli("put", "a.txt", "./st#k", "--meta", "novalue")
    assert r.code == 2 and "is not KEY=VALUE" in r.err and "Traceback" not in r.err
    r = cli("put", "a.txt", "./st#k", "--kind", "folder")
    assert r.code == 2 and "--kind" in r.err
    r = cli("put", "missing.txt", "./st#k")
    assert r.code == 1
    assert "the local path does not exist" in one_error_line(r.err)
    r = cli("put", "a.txt", "./st#k", "--kind", "dir")
    assert r.code == 1 and "is a file but --kind dir was given: use --kind file" in one_error_line(r.err)


def test_get_round_trips_files_and_directories(cli: Cli, work: Path) -> None:
    assert cli("put", "a.txt", "./st#runs/a.txt", "-q").code == 0
    assert cli("put", "d", "./st#runs/d", "-q").code == 0

    r = cli("get", "./st#runs/a.txt", "copy.txt")
    assert r.code == 0, r.err
    assert (work / "copy.txt").read_bytes() == b"alpha\n"
    assert "(file, 6 bytes, digest verified)" in r.out

    r = cli("get", "./st#runs/a.txt", "new-folder/")  # a trailing slash: a folder, made if needed
    assert r.code == 0 and (work / "new-folder" / "a.txt").read_bytes() == b"alpha\n"

    r = cli("get", "./st#runs/d", "tree", "--json", "--no-verify")
    doc = json.loads(r.out)
    assert doc["verified"] is False and doc["ref"]["kind"] == "dir"
    assert (work / "tree" / "sub" / "y.txt").read_bytes() == b"y"
    assert cli("get", "./st#runs/d", "tree2", "-q").out == ""


def test_ls_plain_long_json_and_prefix(cli: Cli, work: Path) -> None:
    for key in ("runs/b.txt", "runs/a.txt", "other/z.txt"):
        assert cli("put", "a.txt", f"./st#{key}", "-q").code == 0
    assert cli("put", "d", "./st#runs/d", "-q").code == 0

    r = cli("ls", "./st")
    assert (r.code, r.out) == (0, "other/z.txt\nruns/a.txt\nruns/b.txt\nruns/d\n")
    assert cli("ls", "./st#runs/").out == "runs/a.txt\nruns/b.txt\nruns/d\n"
    assert cli("ls", "./st#nothing-here").out == ""

    lines = cli("ls", "./st#runs/", "--long").out.splitlines()
    digest = hashlib.sha256(b"alpha\n").hexdigest()[:12]
    assert lines[0].split()[:5] == ["runs/a.txt", "file", "6", "bytes", f"sha256:{digest}"]
    assert lines[2].split()[:4] == ["runs/d", "dir", "1.5", "kB"]

    docs = json.loads(cli("ls", "./st#runs/", "--json").out)
    assert [d["key"] for d in docs] == ["runs/a.txt", "runs/b.txt", "runs/d"]
    assert docs[0]["digest"] == f"sha256:{hashlib.sha256(b'alpha' + bytes([10])).hexdigest()}"


def test_rm_asks_on_a_terminal_and_refuses_to_guess_without_one(
    cli: Cli, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("put", "a.txt", "./st#a", "-q").code == 0

    r = cli("rm", "./st#a")  # stdin is not a terminal: no prompt, no deletion
    assert r.code == 2 and "pass --yes" in one_error_line(r.err)
    assert cli("ls", "./st").out == "a\n"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    r = cli("rm", "./st#a")
    assert r.code == 1 and "delete a (6 bytes)" in r.err and "nothing done" in r.err
    assert cli("ls", "./st").out == "a\n"

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    r = cli("rm", "./st#a")
    assert r.code == 0 and "deleted a" in r.out
    assert cli("ls", "./st").out == ""

    assert cli("put", "a.txt", "./st#b", "-q").code == 0
    r = cli("rm", "./st#b", "--yes", "--json")
    assert r.code == 0 and json.loads(r.out)["deleted"]["key"] == "b"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("command", ["get", "info", "rm"])
def test_a_missing_key_is_one_line_and_exit_1(cli: Cli, work: Path, command: str) -> None:
    assert cli("put", "a.txt", "./st#runs/a.txt", "-q").code == 0
    args = (
        [command, "./st#runs/nope.txt"]
        + (["out.txt"] if command == "get" else [])
        + (["--yes"] if command == "rm" else [])
    )
    r = cli(*args)
    assert r.code == 1
    line = one_error_line(r.err)
    assert (
        line
        == f"error: no artifact 'runs/nope.txt' in {(work / 'st').as_uri()}: list the keys with scalable ls './st#runs'"
    )
    assert r.out == "" and not (work / "out.txt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "s3:/bucket#k", "out"], "looks like a scheme without '://'"),
        (["get", "./st", "out"], "names a store but no artifact"),
        (["info", "./st#a//b"], "empty path segments"),
        (["rm", "", "--yes"], "it is empty"),
        (["ls", "s3://#x"], "names no bucket"),
        (["verify", "./st#../x"], "'..' segments"),
    ],
)
def test_an_unparseable_uri_is_a_usage_error(cli: Cli, work: Path, args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.code == 2
    assert message in r.err and "Invalid value for 'STORE" in r.err
    assert "Traceback" not in r.err and r.out == ""


def test_an_unknown_scheme_or_missing_store_is_a_failure(cli: Cli, work: Path) -> None:
    r = cli("ls", "nosuchscheme://bucket/x")
    assert r.code == 1
    line = one_error_line(r.err)
    assert "unknown URI scheme 'nosuchscheme'" in line and "STORE#KEY" in line
    r = cli("get", "./nowhere#k", "out")
    assert r.code == 1 and "no artifact store at" in one_error_line(r.err)
    assert not (work / "nowhere").exists()


def test_a_corrupt_artifact_fails_get_and_verify_naming_the_key(cli: Cli, work: Path) -> None:
    (work / "b.txt").write_bytes(b"bravo\n")  # other bytes: the same bytes would be one shared object
    for src, key in (("a.txt", "runs/a.txt"), ("b.txt", "runs/b.txt")):
        assert cli("put", src, f"./st#{key}", "-q").code == 0
    assert cli("put", "d", "./st#runs/d", "-q").code == 0
    r = cli("verify", "./st")
    assert (r.code, r.out) == (0, f"checked 3 artifacts in {(work / 'st').as_uri()}: 3 ok, 0 bad\n")

    flip_a_byte(work / "st", "runs/b.txt")
    r = cli("get", "./st#runs/b.txt", "out.txt")
    assert r.code == 1
    line = one_error_line(r.err)
    assert "'runs/b.txt'" in line and "does not match its digest" in line
    assert not (work / "out.txt").exists()

    r = cli("--debug", "get", "./st#runs/b.txt", "out.txt")
    assert r.code == 1 and "Traceback" in r.err and "IntegrityError" in r.err

    r = cli("verify", "./st")
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0].startswith("BAD runs/b.txt: ") and "does not match its digest" in lines[0]
    assert lines[1] == f"checked 3 artifacts in {(work / 'st').as_uri()}: 2 ok, 1 bad"
    assert "1 of 3 artifacts failed verification" in one_error_line(r.err)

    r = cli("verify", "./st#runs/a")  # a prefix that leaves the bad one out
    assert r.code == 0 and "1 ok, 0 bad" in r.out

    doc = json.loads(cli("verify", "./st", "--json").out)
    assert doc["ok"] == ["runs/a.txt", "runs/d"] and [b["key"] for b in doc["bad"]] == ["runs/b.txt"]

    r = cli("verify", "./st", "--quiet")
    assert r.code == 1 and r.out.startswith("BAD runs/b.txt") and len(r.out.splitlines()) == 1


def test_verify_reads_each_shared_object_once_and_reports_every_key(
    cli: Cli, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalable.artifacts.local import LocalArtifactStore

    store = LocalArtifactStore(work / "st")
    keys = [f"k/{i:02d}.txt" for i in range(50)]
    for key in keys:
        store.put_bytes(b"the same bytes\n", key)
    for data in (b"one", b"two", b"one"):  # three versions of a key, two contents
        store.put_bytes(data, "v.txt")
    reads: list[str] = []
    real_open = LocalArtifactStore._open_read

    def counting_open(self: LocalArtifactStore, rel: str):  # type: ignore[no-untyped-def]
        if rel.startswith(".scalable/objects/"):
            reads.append(rel)
        return real_open(self, rel)

    monkeypatch.setattr(LocalArtifactStore, "_open_read", counting_open)
    r = cli("verify", "./st")
    assert (r.code, r.out) == (0, f"checked 51 artifacts in {(work / 'st').as_uri()}: 51 ok, 0 bad\n")
    assert len(reads) == len(set(reads)) == 2  # 50 keys, one object: read once
    reads.clear()
    doc = json.loads(cli("verify", "./st", "--all-versions", "--json").out)
    assert doc["ok"] == [*keys, "v.txt@1", "v.txt@2", "v.txt"] and doc["bad"] == []
    assert doc["checked"] == 53 and doc["objects"] == 3 and len(reads) == len(set(reads)) == 3

    flip_a_byte(work / "st", keys[0])
    r = cli("verify", "./st#k/")
    assert r.code == 1
    assert [line.split(":")[0] for line in r.out.splitlines()[:-1]] == [f"BAD {key}" for key in keys]
    assert r.out.splitlines()[-1].endswith(": 0 ok, 50 bad")


def test_verify_reports_missing_bytes(cli: Cli, work: Path) -> None:
    assert cli("put", "d", "./st#runs/d", "-q").code == 0
    from scalable.artifacts.layout import object_path
    from scalable.artifacts.local import LocalArtifactStore

    [entry] = [e for e in LocalArtifactStore(work / "st").tree("runs/d") if e.path.endswith("y.txt")]
    assert entry.digest is not None
    (work / "st" / object_path(entry.digest)).unlink()
    r = cli("verify", "./st")
    assert r.code == 1 and r.out.startswith("BAD runs/d: ")


# ------------------------------------------------------------------ cache


def fill_cache(directory: Path, sizes: list[int]) -> None:
    from scalable.cache.local import LocalTier

    tier = LocalTier(directory, 10**9)
    for i, size in enumerate(sizes):
        tier.set(f"key{i:02d}", b"v" * size)
    tier.close()


def test_cache_info_clear_prune(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(cache_dir))

    doc = json.loads(cli("cache", "info", "--json").out)
    assert doc["exists"] is False and doc["entries"] == 0 and not cache_dir.exists()

    fill_cache(cache_dir, [1000, 2000, 50_000, 3000])
    doc = json.loads(cli("cache", "info", "--json").out)
    assert doc["local_dir"] == str(cache_dir) and doc["local_dir_source"] == "$SCALABLE_CACHE_DIR"
    assert (doc["entries"], doc["data_bytes"]) == (4, 56_000)
    assert doc["remote"] is None and doc["manifest"] is None
    r = cli("cache", "info")
    assert f"local dir   {cache_dir}  [$SCALABLE_CACHE_DIR]" in r.out and "entries     4" in r.out
    assert "56.0 kB in entries" in r.out

    r = cli("cache", "prune", "--older-than", "1d", "--json")
    assert json.loads(r.out)["removed"] == 0
    r = cli("cache", "prune", "--max-size", "10kB")  # least recently used first: the oldest three go
    assert r.code == 0 and "removed 3 entries" in r.out and "1 left" in r.out
    assert json.loads(cli("cache", "info", "--json").out)["data_bytes"] == 3000

    r = cli("cache", "clear")
    assert r.code == 2 and "pass --yes" in one_error_line(r.err)
    r = cli("cache", "clear", "--yes")
    assert r.code == 0 and f"removed 1 entry from {cache_dir}" in r.out
    assert json.loads(cli("cache", "info", "--json").out)["entries"] == 0

    fill_cache(cache_dir, [10, 10])
    assert json.loads(cli("cache", "prune", "--older-than", "0s", "--json").out)["removed"] == 2


def test_cache_settings_come_from_the_manifest(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "version: 1\nproject:\n  local_cache: ./c\n  cache_remote: s3://user:pw@bucket/cache\n"
    )
    doc = json.loads(cli("cache", "info", "--json").out)
    assert doc["local_dir"] == str(tmp_path / "c") and doc["local_dir_source"] == "manifest"
    assert doc["remote"] == "s3://***@bucket/cache" and doc["remote_source"] == "manifest"
    assert doc["manifest"] == str(tmp_path / "scalable.yaml")
    r = cli("cache", "clear", "--yes")
    assert "the remote tier s3://***@bucket/cache is shared and was not touched" in r.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cache", "prune"], "give --older-than, --max-size, or both"),
        (["cache", "prune", "--older-than", "3 fortnights"], "is not a duration"),
        (["cache", "prune", "--max-size", "lots"], "is not a size"),
    ],
)
def test_cache_prune_usage_errors(cli: Cli, args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.code == 2 and message in r.err and "Traceback" not in r.err


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "12h", "2d", "1w", "1.5h")] == [
        90,
        90,
        900,
        43200,
        172800,
        604800,
        5400,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


# ------------------------------------------------------------------ validate / schema / the app


def test_validate(cli: Cli, tmp_path: Path) -> None:
    r = cli("validate")
    assert r.code == 1 and "nothing to validate" in one_error_line(r.err)

    (tmp_path / "scalable.yaml").write_text("version: 1\nproject:\n  name: demo\n")
    r = cli("validate")
    assert (r.code, r.out) == (0, f"ok: {tmp_path / 'scalable.yaml'}\n")

    (tmp_path / "bad.yaml").write_text(
        "version: 1\nproject:\n  nmae: demo\ntargets:\n  hpc: {provider: slurm, cores: -1}\n"
    )
    r = cli("validate", "bad.yaml")
    assert r.code == 1 and "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("error: bad.yaml:3: project.nmae: unknown field; did you mean 'name'?")
    assert any(line.startswith("bad.yaml:5: targets.hpc.cores") for line in lines[1:])

    doc = json.loads(cli("validate", "bad.yaml", "--json").out)
    assert doc["ok"] is False and doc["path"] == "bad.yaml"
    assert {"line": 3, "field": "project.nmae", "message": "unknown field; did you mean 'name'?"} in doc["problems"]
    assert json.loads(cli("validate", "scalable.yaml", "--json").out)["ok"] is True

    r = cli("validate", "missing.yaml")
    assert r.code == 1 and "manifest file not found" in one_error_line(r.err)


def test_schema_is_the_manifest_json_schema(cli: Cli) -> None:
    import scalable

    r = cli("schema")
    assert r.code == 0 and json.loads(r.out) == json.loads(json.dumps(scalable.json_schema()))


def test_help_version_and_usage_exit_codes(cli: Cli) -> None:
    r = cli("--help")
    assert r.code == 0
    for command in ("put", "get", "ls", "info", "rm", "verify", "cache", "validate", "schema"):
        assert command in r.out
    assert cli().code == 2  # no command: help, and a usage exit code
    assert cli("--version").out.startswith("scalable ")
    assert cli("no-such-command").code == 2
    r = cli("get", "./st#a")  # DEST missing
    assert r.code == 2 and "Missing argument" in r.err


def test_a_malformed_cache_variable_is_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_CACHE_SIZE_LIMIT", "huge")
    r = cli("cache", "info")
    assert r.code == 1 and "SCALABLE_CACHE_SIZE_LIMIT='huge' is not a size" in one_error_line(r.err)


# ------------------------------------------------------------------ progress


@pytest.mark.parametrize("seconds", [0.5, 2.0])
def test_a_progress_bar_shows_only_for_transfers_over_a_second(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    from rich.console import Console

    from scalable.cli.output import Output
    from scalable.cli.progress import BarCallback as _BarCallback

    out = Output()
    screen = io.StringIO()
    out.err = Console(file=screen, force_terminal=True, width=100)
    clock = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])  # the clock output.py reads
    with out.progress("put runs/big.bin", total=None) as advance:
        callback = _BarCallback(advance)
        callback.set_size(4_000_000)
        callback.relative_update(1_000_000)
        clock[0] = seconds
        callback.relative_update(1_000_000)
        callback.absolute_update(4_000_000)
    shown = screen.getvalue()
    if seconds > 1:
        assert "put runs/big.bin" in shown and "4.0/4.0 MB" in shown
    else:
        assert "put runs/big.bin" not in shown


@pytest.mark.parametrize(("flags", "terminal"), [({}, False), ({"quiet": True}, True), ({"json_mode": True}, True)])
def test_no_progress_bar_without_a_terminal_or_with_quiet_or_json(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool], terminal: bool
) -> None:
    from rich.console import Console

    from scalable.cli.output import Output

    out = Output(**flags)
    screen = io.StringIO()
    out.err = Console(file=screen, force_terminal=terminal, width=100)
    clock = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    with out.progress("get x", total=10) as advance:
        advance.set_total(20)
        clock[0] = 5.0  # long enough to show, were it allowed
        advance(20)
    assert "get x" not in screen.getvalue()
