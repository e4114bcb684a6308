"""The ``scalable`` command as a real process (``python -m scalable``), on a local store and on S3.

The S3 store is a real SeaweedFS server on 127.0.0.1; the command finds it through the
driver's environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...) or through
the storage options of a ``scalable.yaml`` in its working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.servers.seaweedfs import SeaweedFS


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without scalable's or AWS's variables (so the machine cannot leak in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALABLE_", "AWS_"))}
    env.update({"SCALABLE_DIGEST_CACHE": "off", "AWS_EC2_METADATA_DISABLED": "true", **extra})
    return env


def scalable(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalable", *args],
        cwd=cwd,
        env=env or clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_the_command_starts_without_dask_or_object_store_drivers(tmp_path: Path) -> None:
    code = (
        "import sys; from scalable.cli.app import main; rc = main(['--help']); "
        "print(rc, sorted(m for m in ('dask', 'distributed', 's3fs', 'gcsfs', 'adlfs') if m in sys.modules), "
        "file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "0 []"
    assert "verify" in done.stdout


def test_local_store_round_trip_and_failures(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    put = scalable("put", "a.txt", "./st#runs/a.txt", "--json", cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    ref = json.loads(put.stdout)
    assert ref["key"] == "runs/a.txt" and ref["size_bytes"] == 6

    got = scalable("get", "./st#runs/a.txt", "out.txt", "-q", cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (0, "", "")
    assert (tmp_path / "out.txt").read_bytes() == b"alpha\n"

    missing = scalable("info", "./st#runs/b.txt", cwd=tmp_path)
    assert missing.returncode == 1 and "no artifact 'runs/b.txt'" in one_error_line(missing.stderr)

    bad_uri = scalable("get", "s3:/bucket#k", "x", cwd=tmp_path)
    assert bad_uri.returncode == 2 and "looks like a scheme without '://'" in bad_uri.stderr
    assert "Traceback" not in bad_uri.stderr

    no_prompt = scalable("rm", "./st#runs/a.txt", cwd=tmp_path, stdin="y\n")  # a pipe is not a terminal
    assert no_prompt.returncode == 2 and "pass --yes" in one_error_line(no_prompt.stderr)

    [obj] = [p for p in (tmp_path / "st" / ".scalable" / "objects" / "sha256").rglob("*") if p.is_file()]
    obj.write_bytes(b"alphA\n")  # the one object: named by the digest of b"alpha\n"
    verify = scalable("verify", "./st", cwd=tmp_path)
    assert verify.returncode == 1
    assert verify.stdout.startswith("BAD runs/a.txt: ") and "0 ok, 1 bad" in verify.stdout
    assert "1 of 1 artifact failed verification" in one_error_line(verify.stderr)

    debug = scalable("--debug", "get", "./st#runs/a.txt", "again.txt", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "IntegrityError" in debug.stderr
    assert "'runs/a.txt'" in debug.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "again.txt").exists()


# ------------------------------------------------------------------ S3


@pytest.fixture
def s3_prefix(s3_server: SeaweedFS) -> str:
    return s3_server.url(s3_server.shared_bucket(), f"cli-{uuid.uuid4().hex[:12]}")


def aws_env(server: SeaweedFS, **extra: str) -> dict[str, str]:
    return clean_env(
        AWS_ENDPOINT_URL=server.endpoint_url,
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        **extra,
    )


def object_path(server: SeaweedFS, prefix: str, digest: str) -> str:
    """Where the object of ``digest`` is in the store at ``prefix``."""
    from scalable.artifacts.layout import object_path as rel_path

    return f"{prefix.removeprefix('s3://')}/{rel_path(digest)}"


def test_s3_through_the_aws_environment_variables(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    env = aws_env(s3_server)
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "other.csv").write_text("x,y\n3,4\n")  # other bytes: the same bytes would share one object

    put = scalable("put", "a.csv", f"{s3_prefix}#runs/a.csv", cwd=tmp_path, env=env)
    assert put.returncode == 0, put.stderr
    assert f"uri      {s3_prefix}/runs/a.csv" in put.stdout
    assert scalable("put", "other.csv", f"{s3_prefix}#runs/b.csv", "-q", cwd=tmp_path, env=env).returncode == 0

    listing = scalable("ls", f"{s3_prefix}#runs/", "--long", cwd=tmp_path, env=env)
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert [r[:4] for r in rows] == [["runs/a.csv", "file", "8", "bytes"], ["runs/b.csv", "file", "8", "bytes"]]

    got = scalable("get", f"{s3_prefix}#runs/b.csv", "b.csv", cwd=tmp_path, env=env)
    assert got.returncode == 0 and (tmp_path / "b.csv").read_text() == "x,y\n3,4\n"

    missing = scalable("get", f"{s3_prefix}#runs/nope", "x", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "no artifact 'runs/nope'" in one_error_line(missing.stderr)

    fs = s3_server.filesystem()
    digest = json.loads(scalable("info", f"{s3_prefix}#runs/a.csv", "--json", cwd=tmp_path, env=env).stdout)["digest"]
    fs.pipe_file(object_path(s3_server, s3_prefix, digest), b"x,y\n1,3\n")  # same size, one byte off
    bad = scalable("verify", s3_prefix, "--json", cwd=tmp_path, env=env)
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report["ok"] == ["runs/b.csv"]
    assert [b["key"] for b in report["bad"]] == ["runs/a.csv"] and "does not match" in report["bad"][0]["error"]
    get = scalable("get", f"{s3_prefix}#runs/a.csv", "a-copy.csv", cwd=tmp_path, env=env)
    assert get.returncode == 1 and "'runs/a.csv'" in one_error_line(get.stderr)
    assert not (tmp_path / "a-copy.csv").exists()

    refused = scalable("ls", s3_prefix, cwd=tmp_path, env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert refused.returncode == 1
    line = one_error_line(refused.stderr)
    assert "refused" in line and "check the credentials" in line


def test_s3_through_the_manifest_storage_options(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    options: dict[str, Any] = s3_server.storage_options
    manifest = {
        "version": 1,
        "project": {"default_storage": s3_prefix, "storage_options": {"s3://": options}},
    }
    (tmp_path / "scalable.yaml").write_text(json.dumps(manifest))  # JSON is YAML
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    env = clean_env()

    put = scalable("put", "a.txt", "#a.txt", "--quiet", cwd=tmp_path, env=env)
    assert put.returncode == 0, put.stderr
    assert scalable("ls", cwd=tmp_path, env=env).stdout == "a.txt\n"  # URI left out: the default store
    rm = scalable("rm", f"{s3_prefix}#a.txt", "--yes", "--json", cwd=tmp_path, env=env)
    assert rm.returncode == 0 and json.loads(rm.stdout)["deleted"]["digest"] == put.stdout.strip()
    assert scalable("ls", "#", cwd=tmp_path, env=env).stdout == ""


def test_get_onto_existing_paths_refuses_merges_or_replaces_as_asked(tmp_path: Path) -> None:
    """Issue 13: `get` of a directory onto an existing folder deleted the user's files and exited 0."""
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "a.txt").write_text("a")
    (tmp_path / "tree" / "sub" / "b.txt").write_text("b")
    assert scalable("put", "tree", "./st#tree", cwd=tmp_path).returncode == 0
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("keep")

    refused = scalable("get", "./st#tree", "existing", cwd=tmp_path)
    assert refused.returncode == 1
    assert "--merge" in one_error_line(refused.stderr) and "--force" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "existing").iterdir()) == ["keep.txt"]

    merged = scalable("get", "./st#tree", "existing", "--merge", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert sorted(p.name for p in (tmp_path / "existing").iterdir()) == ["a.txt", "keep.txt", "sub"]

    (tmp_path / "plain.txt").write_text("mine")
    onto_file = scalable("get", "./st#tree", "plain.txt", cwd=tmp_path)
    assert onto_file.returncode == 1 and (tmp_path / "plain.txt").read_text() == "mine"
    forced = scalable("get", "./st#tree", "plain.txt", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "plain.txt" / "sub" / "b.txt").read_text() == "b"

    assert scalable("put", "tree/a.txt", "./st#a.txt", cwd=tmp_path).returncode == 0
    into = scalable("get", "./st#a.txt", "existing", cwd=tmp_path)
    assert into.returncode == 1 and "end the destination with '/'" in into.stderr
    inside = scalable("get", "./st#a.txt", "existing/", cwd=tmp_path)
    assert inside.returncode == 0 and (tmp_path / "existing" / "a.txt").read_text() == "a"
    help_text = scalable("get", "--help", cwd=tmp_path).stdout
    assert "--force" in help_text and "--merge" in help_text


def test_a_huge_invalid_key_is_echoed_once_and_cut(tmp_path: Path) -> None:
    done = scalable("get", "./st#" + "k" * 5000, "out", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr) < 1200 and "5005 characters" in done.stderr and "k" * 100 not in done.stderr
