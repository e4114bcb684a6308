"""The documentation builds without a warning, and every example in it runs.

* The Sphinx site in ``docs/`` is built with ``-W --keep-going`` into a temporary folder.
* For each docs page and the README, its ```` ```python ```` blocks run in order in one fresh
  subprocess, in a fresh working directory, so later blocks use the names of earlier ones;
  each ```` ```console ```` line ``$ scalable ...`` runs at its place in the page and must exit
  0, or the code its ``# exit N`` comment names.
* Examples name plain ``s3://``, ``gs://`` and ``az://`` URIs: they run against the test
  servers, reached through the variables a reader would set (``AWS_ENDPOINT_URL`` and the AWS
  keys, ``STORAGE_EMULATOR_HOST``, ``AZURE_STORAGE_CONNECTION_STRING``), with the buckets
  they name created first.

A comment line just before a block steers it: ``% docs-test: skip (reason)`` (or
``<!-- docs-test: skip (reason) -->`` in the README) leaves it out, and only a handful may;
``% docs-test: write FILE`` writes the block's text to ``FILE`` at that point (a
``scalable.yaml`` the page shows, which the following code reads).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

#: At most this many blocks may be skipped across all pages.
MAX_SKIPPED = 5

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_DIRECTIVE = re.compile(r"^\s*(?:%|<!--)\s*docs-test:\s*(?P<what>skip|write)\b\s*(?P<arg>.*?)\s*(?:-->)?\s*$")
_EXIT = re.compile(r"\s+#\s*exit(?: code)?\s+(?P<code>\d+)\s*$")
_BUCKET = re.compile(r"\b(?P<scheme>s3|s3a|gs|gcs|az|abfs|abfss)://(?P<bucket>[a-z0-9][a-z0-9._-]*)")
_SERVER_FOR = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


@dataclass
class Step:
    """One runnable piece of a page, in page order."""

    kind: str  # "python", "console" or "write"
    line: int  # 1-based line of the opening fence
    text: str
    arg: str = ""  # the file of a "write" step

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")


@dataclass
class Page:
    """A page's steps, and the blocks it skips (line, first line, reason)."""

    path: Path
    steps: list[Step] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def schemes(self) -> dict[str, set[str]]:
        """Server kind -> buckets named by the page's runnable steps."""
        found: dict[str, set[str]] = {}
        for step in self.steps:
            for match in _BUCKET.finditer(step.text):
                found.setdefault(_SERVER_FOR[match["scheme"]], set()).add(match["bucket"])
        return found


def parse_page(path: Path) -> Page:
    """The ``python`` and ``console`` blocks of a markdown page, with their docs-test directives."""
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info, start = match["fence"], match["info"].lower(), i
        end = start + 1
        while end < len(lines) and not lines[end].strip().startswith(fence[0] * len(fence)):
            end += 1
        body = textwrap.dedent("\n".join(lines[start + 1 : end])) + "\n"
        i = end + 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        directive = _DIRECTIVE.match(previous)
        step = Step(info, start + 1, body)
        if directive and directive["what"] == "skip":
            if info in ("python", "console"):
                page.skipped.append((step.line, step.first_line, directive["arg"].strip("() ") or "no reason given"))
            continue
        if directive and directive["what"] == "write":
            page.steps.append(Step("write", start + 1, body, arg=directive["arg"]))
        elif info == "python" or (info == "console" and any(ln.startswith("$ scalable") for ln in body.splitlines())):
            page.steps.append(step)
    return page


ALL_PAGES = [parse_page(p) for p in PAGES]

#: Runs a page's steps in order in one process; ``python -m`` would change ``__main__``.
DRIVER = r"""
import json, re, shlex, sys, time, traceback

EXIT = re.compile(r"\s+#\s*exit(?: code)?\s+(?P<code>\d+)\s*$")


def run_console(text):
    from scalable.cli.app import main as scalable_main  # in this process: no interpreter start per command

    for line in text.splitlines():
        if not line.startswith("$ "):
            continue  # output shown in the docs: not compared
        command = line[2:]
        expected = 0
        match = EXIT.search(command)
        if match:
            expected, command = int(match["code"]), command[: match.start()]
        args = shlex.split(command)
        if args[0] != "scalable":
            raise RuntimeError(f"only scalable commands run in docs examples, not `{command}`")
        print(f"$ {command.strip()}", flush=True)
        try:
            code = scalable_main(args[1:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        if code != expected:
            raise RuntimeError(f"`$ {command.strip()}` exited {code}, expected {expected} (its output is above)")


def main():
    steps = json.loads(open(sys.argv[1], encoding="utf-8").read())
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    for n, step in enumerate(steps):
        started = time.perf_counter()
        try:
            if step["kind"] == "write":
                with open(step["arg"], "w", encoding="utf-8") as f:
                    f.write(step["text"])
            elif step["kind"] == "console":
                run_console(step["text"])
            else:
                exec(compile(step["text"], step["file"], "exec"), namespace)
        except BaseException:
            sys.stdout.flush()
            print(f"\nDOCS-STEP-FAILED {n}", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
        print(f"DOCS-STEP-TIME {n} {time.perf_counter() - started:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
"""


@dataclass
class PageRun:
    """A page's examples running in a subprocess; its output goes to files (no pipe to fill up)."""

    page: Page
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


def start_page(page: Page, workdir: Path, env: dict[str, str]) -> PageRun:
    """Start running ``page``'s steps, in order, in one subprocess with ``workdir`` as its working directory."""
    blocks = workdir.parent / f"{workdir.name}-blocks"
    blocks.mkdir()
    doc = []
    for step in page.steps:
        item: dict[str, Any] = {"kind": step.kind, "text": step.text, "arg": step.arg}
        if step.kind == "python":
            # A real file per block, so that inspect.getsource (and @cacheable's source hash) finds the code.
            file = blocks / f"{page.path.stem}_line{step.line}.py"
            file.write_text(step.text, encoding="utf-8")
            item["file"] = str(file)
        doc.append(item)
    steps_file = blocks / "steps.json"
    steps_file.write_text(json.dumps(doc), encoding="utf-8")
    driver = blocks / "docs_driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    stdout, stderr = blocks / "stdout.txt", blocks / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(driver), str(steps_file)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    return PageRun(page, proc, stdout, stderr)


def check_page(run: PageRun, timeout: float = 180) -> None:
    """Wait for ``run``; fail with the page, the block's line and first line, and the error."""
    page = run.page
    try:
        returncode = run.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()
        pytest.fail(f"{page.name}: the examples did not finish in {timeout:.0f} s")
    if returncode == 0:
        return
    stdout = run.stdout.read_text(encoding="utf-8", errors="replace")
    stderr = run.stderr.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"DOCS-STEP-FAILED (\d+)\n", stderr)
    if match is None:
        pytest.fail(f"{page.name}: the examples exited {returncode}\n{stderr[-3000:]}")
    step = page.steps[int(match.group(1))]
    error = stderr[match.end() :].strip()
    before = "\n".join(ln for ln in stderr[: match.start()].splitlines() if not ln.startswith("DOCS-STEP-TIME"))
    pytest.fail(
        f"{page.name}, {step.kind} block at line {step.line} ({step.first_line!r}) failed:\n{error[-4000:]}\n"
        f"--- stdout before the failure:\n{stdout[-1500:]}\n--- stderr before the failure:\n{before[-1500:]}",
        pytrace=False,
    )


def run_page(page: Page, workdir: Path, env: dict[str, str], timeout: float = 180) -> None:
    """Run ``page``'s examples and wait for them (see :func:`check_page`)."""
    check_page(start_page(page, workdir, env), timeout)


def base_env() -> dict[str, str]:
    """The environment of a reader with no scalable, cloud or emulator settings."""
    dropped = ("SCALABLE_", "AWS_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR_HOST", "GCSFS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["SCALABLE_DIGEST_CACHE"] = "off"
    # gcsfs >= 2025 otherwise swaps in a class that stalls on emulators (see tests/servers/fakegcs.py).
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def server_env(request: pytest.FixtureRequest, page: Page) -> dict[str, str]:
    """Start the servers the page's URIs need, create the buckets it names, and point the usual variables at them."""
    env: dict[str, str] = {}
    for kind, buckets in sorted(page.schemes().items()):
        server = request.getfixturevalue(f"{kind}_server")
        for bucket in sorted(buckets):
            server.make_bucket(bucket)
        if kind == "s3":
            env.update(
                AWS_ENDPOINT_URL=server.endpoint_url,
                AWS_ACCESS_KEY_ID=server.access_key,
                AWS_SECRET_ACCESS_KEY=server.secret_key,
                AWS_DEFAULT_REGION=server.region,
            )
        elif kind == "gcs":
            env["STORAGE_EMULATOR_HOST"] = server.endpoint_url
        else:
            env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
    return env


# ---------------------------------------------------------------------------------------- the site


def test_site_builds_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stderr[-6000:]}"
    html = {
        name: (tmp_path / "html" / f"{name}.html").read_text(encoding="utf-8")
        for name in ("cli", "manifest", "sessions")
    }
    # The generated references list exactly what the code has: every command, schema object and event model.
    import typer

    from scalable.cli.app import _register_commands, app
    from scalable.manifest import json_schema
    from scalable.telemetry import EVENT_TYPES

    _register_commands()
    root = typer.main.get_command(app)
    ctx = root.make_context("scalable", [], resilient_parsing=True)
    for name in root.list_commands(ctx):
        assert f'id="scalable-{name}"' in html["cli"], f"command {name!r} is missing from the CLI reference"
        group = root.get_command(ctx, name)
        for sub in group.list_commands(ctx) if hasattr(group, "list_commands") else []:
            assert f'id="scalable-{name}-{sub}"' in html["cli"], f"'{name} {sub}' is missing from the CLI reference"
    for name in json_schema()["$defs"]:
        if name != "EnvReference":
            assert f'id="manifest-{name.lower()}"' in html["manifest"], f"{name} is missing from the manifest reference"
    for event, model in EVENT_TYPES.items():
        assert event in html["sessions"] and model.__name__ in html["sessions"], f"{event} is missing from the schemas"


# ------------------------------------------------------------------------------------ the examples


RUNNABLE = [p for p in ALL_PAGES if p.steps]


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PageRun | str]]:
    """Every page's examples, started together (their waits overlap), each in a fresh folder.

    A page whose test server cannot be installed here maps to the reason it is skipped.
    """
    runs: dict[str, PageRun | str] = {}
    envs: dict[str, dict[str, str]] = {}
    selected = {  # only the pages whose tests are selected (-k)
        item.callspec.params["page"].name
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_examples_run" and hasattr(item, "callspec")
    }
    for page in (p for p in RUNNABLE if p.name in selected):  # servers first, so that they do not start while pages run
        try:
            envs[page.name] = {**base_env(), **server_env(request, page)}
        except pytest.skip.Exception as exc:  # a server that cannot be installed here skips only its pages
            runs[page.name] = f"{page.name}: {exc}"
    try:
        for page in RUNNABLE:
            if page.name in envs:  # selected, and its servers are there
                workdir = tmp_path_factory.mktemp(page.path.stem) / "cwd"
                workdir.mkdir()
                runs[page.name] = start_page(page, workdir, envs[page.name])
        yield runs
    finally:
        for run in runs.values():  # only the ones a failed test left behind, by their own pid
            if isinstance(run, PageRun) and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_examples_run(page: Page, page_runs: dict[str, PageRun | str]) -> None:
    run = page_runs[page.name]
    if isinstance(run, str):
        pytest.skip(run)
    check_page(run)


def test_only_a_handful_of_blocks_are_skipped() -> None:
    skipped = [f"{p.name}:{line}: {first!r} ({reason})" for p in ALL_PAGES for line, first, reason in p.skipped]
    print("skipped docs blocks:", *skipped, sep="\n  ")
    assert len(skipped) <= MAX_SKIPPED, "too many docs blocks are skipped:\n" + "\n".join(skipped)


def test_examples_exist_on_every_user_page() -> None:
    pages = {p.path.name: p for p in ALL_PAGES}
    for name in ("getting-started.md", "stores.md", "sessions.md", "cli.md", "cache.md", "catalog.md", "README.md"):
        assert any(s.kind == "python" or s.kind == "console" for s in pages[name].steps), f"{name} runs no example"


def test_a_failing_block_names_page_line_and_error(tmp_path: Path) -> None:
    page_file = tmp_path / "broken.md"
    page_file.write_text(
        "# Broken\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is not two'\n```\n"
        "\n% docs-test: skip (never runs)\n```python\nraise SystemExit(3)\n```\n",
        encoding="utf-8",
    )
    page = parse_page(page_file)
    page.path = ROOT / "docs" / "broken.md"  # named like a docs page in the message
    assert [s.line for s in page.steps] == [3, 9] and page.skipped == [(14, "raise SystemExit(3)", "never runs")]
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with pytest.raises(pytest.fail.Exception) as failure:
        run_page(page, workdir, base_env())
    message = str(failure.value)
    assert "docs/broken.md, python block at line 9 (\"assert x == 2, 'x is not two'\")" in message
    assert "AssertionError: x is not two" in message


def test_a_console_exit_code_is_checked(tmp_path: Path) -> None:
    page_file = tmp_path / "cli.md"
    page_file.write_text("```console\n$ scalable --version\n$ scalable --version   # exit 1\n```\n", encoding="utf-8")
    page = parse_page(page_file)
    page.path = ROOT / "docs" / "cli-check.md"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with pytest.raises(pytest.fail.Exception) as failure:
        run_page(page, workdir, base_env())
    assert "`$ scalable --version` exited 0, expected 1" in str(failure.value)
    assert "docs/cli-check.md, console block at line 1 ('$ scalable --version')" in str(failure.value)


def test_exit_comment_and_store_key_are_told_apart() -> None:
    match = _EXIT.search("scalable info ./store#runs/a.csv   # exit 1")
    assert match is not None and match["code"] == "1"
    assert _EXIT.search("scalable info ./store#runs/exit 1") is None
    assert shlex.split("scalable info ./store#runs/a.csv") == ["scalable", "info", "./store#runs/a.csv"]
