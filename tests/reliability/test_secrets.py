"""Secrets: credentials given in URIs, storage options or the environment never come out.

A canary access key and secret (``_helpers_f.CANARY_*``) go in where a user's credentials
would; each test then looks for them where they must not be: error messages (and the
exceptions they chain), logs at DEBUG, the run's records (``run.json``, ``summary.json``,
the JSONL streams, the manifest snapshot), the telemetry copied to the store, and the CLI's
output. The ``tests.secret_scan`` plugin checks every other test's output the same way;
the last tests here show that it fails a test that leaks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest

from scalable import ScalableError, ScalableSession, build_artifact_store, cacheable
from scalable.cache import reset_cache_config
from tests.reliability._helpers_f import CANARY_KEY, CANARY_SECRET, run_cli
from tests.servers.base import find_free_port

CANARIES = (CANARY_KEY, CANARY_SECRET)


def _assert_clean(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"a credential leaked into {where}"


def _error_text(exc: BaseException) -> str:
    """Everything a user could see of an exception: message, repr, and the whole chained traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _call_text(call: Any) -> str:
    try:
        result = call()
    except ScalableError as exc:
        return _error_text(exc)
    return repr(result)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="scalable")  # scalable's own logs, all of them
    return caplog


@pytest.mark.parametrize("transport", ["native", "fsspec"])
def test_credentials_in_storage_options_stay_out_of_errors_and_logs(
    s3_server: Any, debug_logs: pytest.LogCaptureFixture, tally: Any, transport: str
) -> None:
    bucket = s3_server.shared_bucket()
    store = build_artifact_store(
        s3_server.url(bucket, f"secrets-{uuid.uuid4().hex[:8]}"),
        transport=transport,
        **s3_server.options_for(CANARY_KEY, CANARY_SECRET),
    )
    texts = [repr(store), store.uri]
    for call in (lambda: store.put_bytes(b"x", "k"), lambda: store.get_bytes("k"), lambda: store.list_artifacts()):
        texts.append(_call_text(call))
    assert any("AccessDenied" in t or "credentials" in t for t in texts[2:]), texts  # the refusal was exercised
    _assert_clean("\n".join(texts), "an error message or repr")
    _assert_clean(debug_logs.text, "the logs")
    tally.add("secrets", trials=len(texts))


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{CANARY_KEY}:{CANARY_SECRET}@bucket/prefix",
        f"memory://{CANARY_KEY}:{CANARY_SECRET}@host/prefix",
        f"http://{CANARY_KEY}:{CANARY_SECRET}@127.0.0.1:{find_free_port()}/p",
        f"s3://bucket/prefix?X-Amz-Signature={CANARY_SECRET}&X-Amz-Credential={CANARY_KEY}",
        f"az://container/p?sig={CANARY_SECRET}",
        f"s3://{CANARY_KEY}:{CANARY_SECRET}@[bad",
    ],
    ids=["s3-userinfo", "memory-userinfo", "http-userinfo", "s3-signed", "az-sas", "s3-malformed"],
)
def test_credentials_in_uris_stay_out_of_errors_and_logs(
    uri: str, debug_logs: pytest.LogCaptureFixture, tally: Any
) -> None:
    texts = []
    try:
        store = build_artifact_store(uri)
    except ScalableError as exc:
        texts.append(_error_text(exc))
    else:
        texts += [repr(store), store.uri, store.uri_for("k")]
        texts.append(_call_text(lambda: store.put_bytes(b"x", "k")))
        texts.append(_call_text(lambda: store.get_bytes("nope")))
    _assert_clean("\n".join(texts), "an error message, repr or uri")
    _assert_clean(debug_logs.text, "the logs")
    tally.add("secrets", trials=len(texts))


def test_credentials_in_the_environment_stay_out_of_errors_and_cli_output(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch, debug_logs: pytest.LogCaptureFixture, tally: Any
) -> None:
    bucket = s3_server.shared_bucket()
    env = {
        "AWS_ACCESS_KEY_ID": CANARY_KEY,
        "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_DEFAULT_REGION": s3_server.region,
        "SCALABLE_CACHE_SECRET": CANARY_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = build_artifact_store(s3_server.url(bucket, "env-creds"))
    text = _call_text(lambda: store.put_bytes(b"x", "k"))
    assert "AccessDenied" in text or "refused" in text, text
    _assert_clean(text, "an error message")
    _assert_clean(debug_logs.text, "the logs")
    outputs = []
    for args in (
        ["verify", f"s3://{CANARY_KEY}:{CANARY_SECRET}@{bucket}/x"],
        ["--debug", "verify", s3_server.url(bucket, "env-creds")],
    ):
        done = run_cli(args, env=env)
        assert done.returncode != 0
        outputs.append(done.stdout + done.stderr)
    _assert_clean("\n".join(outputs), "the CLI's output")
    tally.add("secrets", trials=1 + len(outputs))


_CALLS: list[int] = []


@cacheable
def _square(x: int) -> int:
    _CALLS.append(x)
    return x * x


def test_a_session_with_credentials_everywhere_writes_none_of_them(
    s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_logs: pytest.LogCaptureFixture, tally: Any
) -> None:
    """Storage options, a cache remote with a token in its URI and canary options, the cache secret in the env."""
    bucket = s3_server.shared_bucket()
    prefix = f"secrets-run-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALABLE_CACHE_SECRET", CANARY_SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_SECRET)
    for var in ("SCALABLE_MANIFEST", "SCALABLE_TARGET", "SCALABLE_DEFAULT_STORAGE", "SCALABLE_RUNS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE_TIMEOUT", "5")
    real = s3_server.storage_options
    manifest = textwrap.dedent(
        f"""\
        version: 1
        project:
          default_storage: s3://{bucket}/{prefix}
          local_cache: ./cache
          cache_remote: s3://{bucket}/{prefix}-cache?token={CANARY_SECRET}
          storage_options:
            "s3://{bucket}/{prefix}":
              key: {real["key"]}
              secret: {real["secret"]}
              client_kwargs: {{endpoint_url: "{s3_server.endpoint_url}", region_name: us-east-1}}
            "s3://{bucket}/{prefix}-cache":
              key: {CANARY_KEY}
              secret: {CANARY_SECRET}
              client_kwargs: {{endpoint_url: "{s3_server.endpoint_url}", region_name: us-east-1}}
        targets:
          local: {{provider: local, n_workers: 1, processes: false}}
        """
    )
    (tmp_path / "scalable.yaml").write_text(manifest)
    (tmp_path / "out.txt").write_text("result\n")
    try:
        with ScalableSession.from_yaml() as session:
            assert _square(7) == 49
            assert _square(7) == 49
            session.record_artifact(tmp_path / "out.txt", name="out.txt")
            _assert_clean(repr(session) + repr(session.handle), "a repr")
            run_dir = session.run_dir
    finally:
        reset_cache_config()
    records = sorted(p.name for p in run_dir.iterdir())
    assert {"run.json", "summary.json", "cache.jsonl", "tasks.jsonl", "artifacts.jsonl", "scalable.yaml"} <= set(
        records
    )
    cache_events = (run_dir / "cache.jsonl").read_text()
    assert "cache.error" in cache_events  # the remote with the canary credentials failed, and said so
    for name in records:
        _assert_clean((run_dir / name).read_text(encoding="utf-8", errors="replace"), f"{name} of the run")
    copied = build_artifact_store(s3_server.url(bucket, prefix), **s3_server.storage_options)
    for key in copied.list_artifacts(f"runs/{session.run_id}/"):
        _assert_clean(copied.get_bytes(key).decode("utf-8", "replace"), f"the stored telemetry {key}")
    _assert_clean(debug_logs.text, "the logs")
    tally.add("secrets", trials=len(records) + 1)


# --------------------------------------------------------------------------- the scan plugin itself

_LEAKY = """
import logging
from pathlib import Path

def test_prints_it():
    print("oops {secret}")

def test_logs_it():
    logging.getLogger("scalable").warning("oops {secret}")

def test_writes_it(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{{"store": "{secret}"}}')

def test_is_clean(tmp_path):
    print("nothing to see")
    (tmp_path / "run.json").write_text("{{}}")
"""


def test_the_secret_scan_fails_a_test_that_leaks_and_does_not_print_the_secret(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(_LEAKY.format(secret=CANARY_SECRET))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.secret_scan",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_leaky.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "3 errors" in out and "4 passed" in out, out  # a leak is an error at teardown of the leaking test
    assert out.count("ERROR test_leaky.py::") == 3 and "ERROR test_leaky.py::test_is_clean" not in out, out
    assert "the canary secret" in out
    assert CANARY_SECRET not in out, "the scan printed the secret it found"
