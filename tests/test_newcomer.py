"""Issue 13, as a new user meets it: honest exit codes, no state from reading, one project, ref URIs, clean help.

Most tests run ``python -m scalable`` as a real process (the exit code and stderr are what a
user sees); object stores are real servers on 127.0.0.1.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scalable import open_uri
from scalable.artifacts.factory import build_artifact_store
from tests.servers.seaweedfs import SeaweedFS
from tests.test_cli_subprocess import aws_env, clean_env, one_error_line, scalable

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- item 2: verify and ls fail on a store that cannot be read ---------------------------------


@pytest.mark.parametrize("command", ["ls", "verify"])
def test_ls_and_verify_of_a_dead_endpoint_exit_1_with_the_message_info_gives(tmp_path: Path, command: str) -> None:
    port = closed_port()
    uri = f"https://127.0.0.1:{port}/x"
    listed = scalable(command, uri, cwd=tmp_path)
    info = scalable("info", f"{uri}#k", cwd=tmp_path)
    assert listed.returncode == 1 and info.returncode == 1
    message = one_error_line(listed.stderr)
    assert f"cannot reach https://127.0.0.1:{port}" in message and "Connection refused" in message
    assert message == one_error_line(info.stderr)
    assert "checked 0" not in listed.stdout


def test_ls_and_verify_of_s3_with_the_server_stopped_fail_fast(tmp_path: Path) -> None:
    server = SeaweedFS(workdir=tmp_path / "weed")
    server.start()
    try:
        bucket = server.make_bucket(f"dead-{uuid.uuid4().hex[:8]}")
        env = aws_env(server)
        (tmp_path / "a.txt").write_text("alpha\n")
        assert scalable("put", "a.txt", f"s3://{bucket}#a.txt", cwd=tmp_path, env=env).returncode == 0
        assert scalable("ls", f"s3://{bucket}", cwd=tmp_path, env=env).stdout == "a.txt\n"
    finally:
        server.stop()  # by the fixture's pid
    for command in ("ls", "verify"):
        dead = scalable(command, f"s3://{bucket}", cwd=tmp_path, env=env)
        assert dead.returncode == 1, dead
        message = one_error_line(dead.stderr)
        assert f"cannot reach {server.endpoint_url}" in message and "SCALABLE_CONNECT_TIMEOUT" in message


def test_a_missing_bucket_is_an_error_and_an_empty_store_says_0_artifacts(s3_server: SeaweedFS, tmp_path: Path) -> None:
    env = aws_env(s3_server)
    missing = scalable("verify", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "does not exist" in one_error_line(missing.stderr)
    empty = f"s3://{s3_server.shared_bucket()}/empty-{uuid.uuid4().hex[:8]}"
    ok = scalable("verify", empty, cwd=tmp_path, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("checked 0 artifacts in "), ok


def test_a_missing_local_store_is_an_error(tmp_path: Path) -> None:
    for command in ("ls", "verify"):
        r = scalable(command, "./nowhere", cwd=tmp_path)
        assert r.returncode == 1 and "no artifact store at" in one_error_line(r.stderr)
    assert files_under(tmp_path) == []


# --- item 3: commands that only read create nothing --------------------------------------------


def test_read_only_commands_create_no_state(tmp_path: Path) -> None:
    where = tmp_path / "somewhere"
    where.mkdir()
    for args in (
        ["runs", "list"],
        ["find", "--name", "*"],
        ["runs", "show", "nosuch"],
        ["report", "nosuch"],
        ["ls"],
        ["verify"],
        ["info", "#k"],
        ["validate"],
        ["cache", "info"],
    ):
        r = scalable(*args, cwd=where)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert files_under(where) == [], (args, files_under(where))
    shown = scalable("runs", "show", "nosuch", cwd=where)
    assert shown.returncode == 1 and "no run 'nosuch'" in one_error_line(shown.stderr)


# --- items 5 and 6: one project wherever you stand; report and STORE#KEY from the catalog -------


def test_the_project_is_found_from_a_subfolder(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "sub" / "deeper").mkdir(parents=True)
    (proj / "scalable.yaml").write_text("version: 1\nproject:\n  default_storage: ./shared\n")
    (proj / "a.txt").write_text("alpha\n")
    assert scalable("put", "a.txt", "#a.txt", cwd=proj).returncode == 0
    assert (proj / "shared" / ".scalable").is_dir()
    here = proj / "sub" / "deeper"
    assert scalable("ls", cwd=here).stdout == "a.txt\n"
    valid = scalable("validate", cwd=here)
    assert valid.returncode == 0 and valid.stdout.strip() == f"ok: {proj / 'scalable.yaml'}"
    code = "from scalable import resolve_settings; s = resolve_settings(); print(s.runs_dir); print(s.default_storage)"
    done = subprocess.run([sys.executable, "-c", code], cwd=here, env=clean_env(), capture_output=True, text=True)
    assert done.stdout.splitlines() == [str(proj / ".scalable" / "runs"), str(proj / "shared")]


def test_without_a_manifest_validate_says_which_defaults_are_in_use(tmp_path: Path) -> None:
    r = scalable("validate", cwd=tmp_path)
    assert r.returncode == 1 and "the built-in defaults are in use" in one_error_line(r.stderr)


RECORD_RUN = """
import sys
from pathlib import Path
from scalable import ScalableSession, build_artifact_store
from scalable.session import Target

store = build_artifact_store(sys.argv[1])
with ScalableSession(target=Target("local", "local", {"n_workers": 1, "processes": False}), store=store,
                     runs_dir=sys.argv[2]) as session:
    Path("out#1.csv").write_text("x\\n1\\n")
    session.record_artifact("out#1.csv", name="out#1.csv", kind="result")
    print(session.run_id)
"""


def test_report_finds_a_reindexed_run_and_find_prints_a_pasteable_store_key(tmp_path: Path) -> None:
    maker = tmp_path / "maker"
    maker.mkdir()
    store = tmp_path / "st"
    done = subprocess.run(
        [sys.executable, "-c", RECORD_RUN, str(store), str(maker / "runs")],
        cwd=maker,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    other = tmp_path / "other"
    other.mkdir()
    assert scalable("reindex", str(store), cwd=other).returncode == 0
    report = scalable("report", run_id[:12], "-o", "r.html", cwd=other)
    assert report.returncode == 0, report.stderr
    assert (other / "r.html").is_file()

    found = scalable("find", "--run", run_id, cwd=other)
    assert found.returncode == 0, found.stderr
    [pasteable] = [w for w in found.stdout.split() if "#" in w and w.startswith("file://")]
    got = scalable("get", pasteable, "copy.csv", cwd=other)
    assert got.returncode == 0, got.stderr
    assert (other / "copy.csv").read_text() == "x\n1\n"


# --- item 7: ref.uri is usable ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["runs/a#b.txt", "runs/100%.txt", "runs/a%23b.txt", "v@2/x.txt", "sp ace/é.txt"])
def test_ref_uri_round_trips_through_open_uri_and_the_cli(tmp_path: Path, key: str) -> None:
    store = build_artifact_store(tmp_path / "st")
    ref = store.put_bytes(b"payload", key)
    opened, back = open_uri(ref.uri)
    assert back == key and opened.uri == store.uri
    assert opened.get_bytes(back) == b"payload"
    info = scalable("info", ref.uri, "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["key"] == key
    verified = scalable("verify", ref.uri, cwd=tmp_path)
    assert verified.returncode == 0 and verified.stdout.startswith("checked 1 artifact in "), verified
    _same, k2 = open_uri(f"{store.uri}#{ref.uri[len(store.uri) + 1 :]}")
    assert k2 == key


def test_ref_uri_of_an_s3_store_resolves_to_its_root(s3_server: SeaweedFS, tmp_path: Path) -> None:
    prefix = s3_server.url(s3_server.shared_bucket(), f"uri-{uuid.uuid4().hex[:8]}/deep")
    store = build_artifact_store(prefix, **s3_server.storage_options)
    ref = store.put_bytes(b"s3 bytes", "a/b#c.txt")
    opened, key = open_uri(ref.uri, **s3_server.storage_options)
    assert (opened.uri, key) == (store.uri, "a/b#c.txt")
    got = scalable("get", ref.uri, "out.txt", cwd=tmp_path, env=aws_env(s3_server))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.txt").read_bytes() == b"s3 bytes"


def test_a_path_in_no_store_is_explained(tmp_path: Path) -> None:
    r = scalable("info", str(tmp_path / "nothing" / "here.txt"), cwd=tmp_path)
    assert r.returncode == 2 and "names a store but no artifact" in r.stderr and "Traceback" not in r.stderr


# --- item 8: no driver tracebacks, bounded time ------------------------------------------------------


def test_an_unreachable_gcs_endpoint_prints_one_line(tmp_path: Path) -> None:
    env = clean_env(
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{closed_port()}", GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false"
    )
    r = scalable("ls", "gs://nonexistent-bucket", cwd=tmp_path, env=env)
    assert r.returncode == 1
    one_error_line(r.stderr)  # one line, no traceback from gcsfs or aiohttp


def test_the_connect_bound_can_be_changed_and_its_errors_say_so(tmp_path: Path) -> None:
    bad = scalable("ls", "s3://bucket", cwd=tmp_path, env=clean_env(SCALABLE_CONNECT_TIMEOUT="soon"))
    assert bad.returncode == 1 and "SCALABLE_CONNECT_TIMEOUT='soon' is not a number" in one_error_line(bad.stderr)


# --- item 9: help reads like a CLI -------------------------------------------------------------------


def _all_commands() -> list[list[str]]:
    from scalable.cli.app import _register_commands, app

    _register_commands()
    import typer.main

    group = typer.main.get_command(app)
    commands: list[list[str]] = [[]]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        commands.append([name])
        for sub in getattr(command, "commands", {}):
            commands.append([name, sub])
    return commands


def test_help_has_no_python_types_and_consistent_metavars(tmp_path: Path) -> None:
    from scalable.cli.app import main

    for path in _all_commands():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("COLUMNS", "120")
            out = subprocess.run(
                [sys.executable, "-m", "scalable", *path, "--help"],
                cwd=tmp_path,
                env=clean_env(COLUMNS="120"),
                capture_output=True,
                text=True,
            ).stdout
        assert out.startswith("Usage: scalable"), (path, out)
        for bad in ("<bool>", "<str>", "<path>", "<int", "list[", "{", "╭"):
            assert bad not in out, (path, bad, out)
    assert main is not None


def test_plurals_are_right(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    assert scalable("put", "a.txt", "./st#a.txt", cwd=tmp_path).returncode == 0
    r = scalable("verify", "./st", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("checked 1 artifact in "), r.stdout


# --- items 10 and 11: start fast; the code's shape ---------------------------------------------------


def test_import_scalable_and_help_load_no_heavy_dependency(tmp_path: Path) -> None:
    heavy = ("pydantic", "fsspec", "dask", "yaml", "diskcache", "rich", "sqlite3", "typer.rich_utils")
    code = (
        f"import sys; import scalable; a = sorted(m for m in {heavy!r} if m in sys.modules); "
        "from scalable.cli.app import main; main(['--help']); "
        f"b = sorted(m for m in {heavy!r} if m in sys.modules); print(a, b, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "[] []"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_upward_or_circular_imports() -> None:
    pkg = ROOT / "scalable"
    for path in (pkg / "session").glob("*.py"):
        assert "scalable" not in _imports(path), path  # the session does not import the top-level package
    for path in (pkg / "cli").glob("*_cmds.py"):
        assert "scalable.cli.app" not in _imports(path), path
    assert "scalable.manifest.load" not in _imports(pkg / "manifest" / "schema.py")
    assert "scalable.manifest.schema" in _imports(pkg / "manifest" / "load.py")


def test_the_uri_regex_and_the_run_prefix_rule_are_written_once() -> None:
    sources = {p: p.read_text() for p in (ROOT / "scalable").rglob("*.py")}
    uri_regexes = [p for p, text in sources.items() if re.search(r"re\.compile\(r\"[^\n]*://\[\^", text)]
    assert [p.name for p in uri_regexes] == ["uris.py"]
    ambiguous = [p for p, text in sources.items() if "is ambiguous" in text and "RunNotFoundError(" in text]
    assert [p.name for p in ambiguous] == ["runids.py"]
