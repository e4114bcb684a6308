"""The command starts fast: ``scalable --help`` and ``scalable ls`` import only what they need.

Each check runs the real command in a fresh interpreter and reads which modules it loaded
(an ``atexit`` hook prints ``sys.modules``), so a module-level import anywhere on the path
makes it fail. Timings are in ``bench/bench_startup.py``, not here.
"""

from __future__ import annotations

import json
import os
import pprint
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "fsspec", "dask", "yaml", "diskcache", "rich", "sqlite3", "typer.rich_utils", "typer._adapters")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALABLE_", "AWS_"))}
    env.update({"SCALABLE_DIGEST_CACHE": "off", "COLUMNS": "100", **extra})
    return env


def run_recording_modules(
    *args: str, cwd: Path, prelude: str = ""
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``scalable ARGS`` as its console script runs it; also the names of the modules it had loaded at exit."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('MODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"{prelude}\n"
        f"sys.argv = ['scalable', *{list(args)!r}]\n"
        "from scalable.cli.app import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    marker = [line for line in done.stderr.splitlines() if line.startswith("MODULES=")]
    assert marker, done.stderr
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("MODULES="))
    return done, set(json.loads(marker[-1][len("MODULES=") :]))


def loaded(modules: set[str], *roots: str) -> list[str]:
    """The modules of ``roots`` (a package and its submodules) among ``modules``."""
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a local store ``st`` with two artifacts."""
    work = tmp_path_factory.mktemp("startup")
    (work / "a.txt").write_text("alpha\n")
    for key in ("a.txt", "runs/b.txt"):
        done = subprocess.run(
            [sys.executable, "-m", "scalable", "put", "a.txt", f"./st#{key}", "-q"],
            cwd=work,
            env=clean_env(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    return work


# --- the command index -------------------------------------------------------------------------


def test_the_command_index_is_what_the_command_modules_declare() -> None:
    from scalable.cli.commands import COMMAND_INDEX, COMMAND_MODULES, declared_index

    declared = declared_index()
    assert list(declared.items()) == list(COMMAND_INDEX.items()), (
        "scalable/cli/commands.py: COMMAND_INDEX differs from what the modules of COMMAND_MODULES declare; "
        "paste this as its value:\n" + pprint.pformat(declared, sort_dicts=False, width=120)
    )
    assert {module for module, _ in COMMAND_INDEX.values()} == set(COMMAND_MODULES)


def test_a_lazily_built_command_is_the_one_registering_builds() -> None:
    """Every command's help (usage, arguments, options) is the same built alone or with the whole tree."""
    import typer
    import typer.main

    from scalable.cli.commands import COMMAND_INDEX, load_command, register

    eager_app = typer.Typer(add_completion=False, rich_markup_mode=None)
    register(eager_app)
    eager = typer.main.get_command(eager_app)
    root_ctx = eager.make_context("scalable", [], resilient_parsing=True)

    def helps(command: object, name: str, parent: object) -> dict[str, str]:
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)  # type: ignore[attr-defined]
        found = {ctx.command_path: command.get_help(ctx)}  # type: ignore[attr-defined]
        for sub in getattr(command, "list_commands", lambda _: [])(ctx):
            found.update(helps(command.get_command(ctx, sub), sub, ctx))  # type: ignore[attr-defined]
        return found

    for name in COMMAND_INDEX:
        lazy = load_command(name)
        assert helps(lazy, name, root_ctx) == helps(eager.get_command(root_ctx, name), name, root_ctx), name
    assert load_command("no-such-command") is None


# --- what each command imports -----------------------------------------------------------------


def test_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    from scalable.cli.commands import COMMAND_INDEX, COMMAND_MODULES

    done, modules = run_recording_modules("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.split("Commands:\n")[1].splitlines() if line.strip()]
    assert listed == list(COMMAND_INDEX)
    assert loaded(modules, *COMMAND_MODULES, *HEAVY) == []


def test_help_is_the_same_with_every_command_registered(tmp_path: Path) -> None:
    lazy, _ = run_recording_modules("--help", cwd=tmp_path)
    eager, modules = run_recording_modules(
        "--help", cwd=tmp_path, prelude="from scalable.cli.app import _register_commands; _register_commands()"
    )
    assert "scalable.cli.store_cmds" in modules  # the eager tree really was built
    assert (lazy.returncode, lazy.stdout) == (eager.returncode, eager.stdout)


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    from scalable.cli.commands import COMMAND_MODULES

    done, modules = run_recording_modules("cache", "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("Usage: scalable cache [OPTIONS] COMMAND"), done.stdout
    assert loaded(modules, *COMMAND_MODULES) == ["scalable.cli.cache_cmds"]


def test_a_mistyped_command_gets_a_suggestion(tmp_path: Path) -> None:
    done, _ = run_recording_modules("lss", cwd=tmp_path)
    assert done.returncode == 2
    assert "No such command 'lss'. Did you mean 'ls'?" in done.stderr, done.stderr


# --- text and flag parameters without pydantic -------------------------------------------------

SAMPLES = {
    "str": [None, "x", "", "st#runs/ü %23.txt", b"bytes", 7],
    "bool": [None, True, False, "true", "no", ""],
    "list": [None, (), ("a", "b"), ["a=1"], "a", ("a", 2)],
}


def _outcome(coercion: object, value: object, param: object, ctx: object) -> tuple[str, object]:
    try:
        result = coercion.coerce(value, param=param, ctx=ctx)  # type: ignore[attr-defined]
    except Exception as exc:  # the same error, or the same value
        return ("error", f"{type(exc).__name__}: {exc}")
    return (type(result).__name__, result)


def test_text_and_flag_values_are_coerced_as_typer_coerces_them() -> None:
    """For every parameter given the plain coercion, any value gives what typer's own coercion gives."""
    import typer
    import typer.main
    from typer._coercion import build_runtime_param

    from scalable.cli.app import app
    from scalable.cli.coercion import PlainText
    from scalable.cli.commands import COMMAND_INDEX

    root = typer.main.get_command(app)
    root_ctx = root.make_context("scalable", [], resilient_parsing=True)
    commands = [(root, root_ctx)]
    for name in COMMAND_INDEX:
        command = root.get_command(root_ctx, name)
        ctx = command.make_context(name, [], parent=root_ctx, resilient_parsing=True)
        commands.append((command, ctx))
        for sub in getattr(command, "list_commands", lambda _: [])(ctx):
            sub_command = command.get_command(ctx, sub)
            commands.append((sub_command, sub_command.make_context(sub, [], parent=ctx, resilient_parsing=True)))
    kinds: dict[str, int] = {}
    for command, ctx in commands:
        for param in command.get_params(ctx):  # the --help option included
            plain = param._runtime_param
            if not isinstance(plain, PlainText):
                continue
            kind = "list" if plain.many else plain.plain.__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            own = build_runtime_param(param.type_descriptor)
            for value in SAMPLES[kind]:
                assert _outcome(plain, value, param, ctx) == _outcome(own, value, param, ctx), (param.name, value)
    assert kinds.get("str", 0) > 10 and kinds.get("bool", 0) > 10 and kinds.get("list", 0) >= 2, kinds


def test_ls_parses_its_arguments_without_pydantic(store: Path) -> None:
    done, modules = run_recording_modules("ls", "-l", "./st#runs/", cwd=store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("runs/b.txt  file")
    assert loaded(modules, "typer._adapters", "scalable.cli.object_cmds") == []


# --- a local store without pydantic or fsspec --------------------------------------------------


def test_ls_of_a_local_store_imports_neither_pydantic_nor_fsspec(store: Path) -> None:
    done, modules = run_recording_modules("ls", "./st", cwd=store)
    assert (done.returncode, done.stdout, done.stderr) == (0, "a.txt\nruns/b.txt\n", "")
    assert loaded(modules, *HEAVY) == []
    # Loaded by the first hash or save, not by opening a store: OpenSSL, pickle, random.
    assert loaded(modules, "hashlib", "pickle", "tempfile", "ctypes") == []
    from scalable.cli.commands import COMMAND_MODULES

    assert loaded(modules, *COMMAND_MODULES) == ["scalable.cli.store_cmds"]


def test_a_missing_local_store_is_still_an_error_without_them(tmp_path: Path) -> None:
    done, modules = run_recording_modules("ls", "./nowhere", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("error: no artifact store at "), done.stderr
    assert loaded(modules, "pydantic", "fsspec") == []


def test_artifact_kind_keeps_its_home_for_pickles() -> None:
    import pickle

    import scalable
    from scalable.artifacts import kinds, ref

    assert ref.ArtifactKind is kinds.ArtifactKind is scalable.ArtifactKind
    assert ref.ArtifactKind.__module__ == "scalable.artifacts.ref"
    assert b"scalable.artifacts.ref" in pickle.dumps(ref.ArtifactKind.DIR)
    assert pickle.loads(pickle.dumps(ref.ArtifactKind.DIRECTORY)) is ref.ArtifactKind.DIR


def test_the_default_progress_callback_offers_fsspecs_interface(tmp_path: Path) -> None:
    """The no-op default takes every call fsspec's no-op callback takes, and a put with it works."""
    from fsspec.callbacks import DEFAULT_CALLBACK as FSSPEC_DEFAULT

    from scalable.artifacts.callbacks import DEFAULT_CALLBACK
    from scalable.artifacts.local import LocalArtifactStore

    methods = ("set_size", "absolute_update", "relative_update", "call", "branched", "wrap", "close")
    for name in methods:
        assert callable(getattr(DEFAULT_CALLBACK, name)) and callable(getattr(FSSPEC_DEFAULT, name)), name
    DEFAULT_CALLBACK.set_size(10)
    DEFAULT_CALLBACK.relative_update(4)
    assert list(DEFAULT_CALLBACK.wrap([1, 2])) == [1, 2]
    assert DEFAULT_CALLBACK.branched("a", "b") is DEFAULT_CALLBACK
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    ref = LocalArtifactStore(tmp_path / "st").put(tmp_path / "a.txt", "a.txt")
    assert ref.size_bytes == 6


def test_artifact_kind_is_importable_without_pydantic(tmp_path: Path) -> None:
    code = "import sys, scalable; print(scalable.ArtifactKind.DIR.value, 'pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert done.stdout.split() == ["dir", "False"], done.stderr
