"""The hash of a function's normalized source: edits to the body change it, reformatting does not.

The source (decorators included, except ``@cacheable`` itself) is parsed, and its syntax tree is written out as nested
tuples of node names and fields: comments, whitespace, line breaks, quote styles,
parentheses and trailing commas are not in the tree, so they never count. The function's
own docstring is left out too (documentation is not behaviour). Fields that are empty
(``None`` or ``[]``) are skipped, so a field that a newer Python adds empty (such as
``type_params`` in 3.12) does not change the hash. Where there is no source (a function
made by ``exec``, a REPL session), the hash falls back to the bytecode, names and
constants of the code object, which are stable on one Python version.

Only the function's own text counts, not the helpers it calls: bump ``version=`` when a
helper's change should invalidate results.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from scalable.cache.keys import encode

SOURCE_FORMAT = "scalable.source/1"

#: Node fields that say nothing about behaviour: load/store context, type comments, the ``u`` string prefix.
_SKIPPED_FIELDS = frozenset({"ctx", "type_comment", "kind"})


def _tree_value(node: Any) -> Any:
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            if name in _SKIPPED_FIELDS:
                continue
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append((name, _tree_value(value)))
        return (type(node).__name__, tuple(fields))
    if isinstance(node, list):
        return tuple(_tree_value(item) for item in node)
    return _constant_value(node)


def _constant_value(value: Any) -> Any:
    if value is None or type(value) in (str, bytes, int, float, complex, bool):
        return value
    if value is Ellipsis:
        return ("...",)
    if isinstance(value, tuple):
        return ("tuple", tuple(_constant_value(v) for v in value))
    if isinstance(value, frozenset):
        return ("frozenset", tuple(sorted((_constant_value(v) for v in value), key=repr)))
    return (type(value).__name__, repr(value))


def _is_cacheable_decorator(node: ast.expr, namespace: dict[str, Any] | None) -> bool:
    """Whether a decorator expression is ``cacheable`` itself (``@cacheable``, ``@cache.cacheable(...)``).

    With the function's globals the name is resolved, so an alias counts; from bare text
    the name ``cacheable`` does.
    """
    target = node.func if isinstance(node, ast.Call) else node
    chain: list[str] = []
    while isinstance(target, ast.Attribute):
        chain.append(target.attr)
        target = target.value
    if not isinstance(target, ast.Name):
        return False
    chain.append(target.id)
    chain.reverse()
    if namespace is None:
        return chain[-1] == "cacheable"
    obj: Any = namespace.get(chain[0], _MISSING)
    for part in chain[1:]:
        obj = getattr(obj, part, _MISSING)
    return getattr(obj, "__module__", None) == "scalable.cache.decorator" and getattr(obj, "__name__", None) == (
        "cacheable"
    )


_MISSING = object()


def _normalized(node: ast.AST, namespace: dict[str, Any] | None) -> ast.AST:
    """The definition without its docstring and without the ``@cacheable`` decorator.

    The cache's own decorator is left out so that its options (``recompute``, ``tiers``,
    the settings) never change keys; ``version=`` is in every key anyway. Every other
    decorator counts.
    """
    fields = {name: getattr(node, name, None) for name in node._fields}
    body = fields.get("body")
    if (
        isinstance(body, list)
        and body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        fields["body"] = body[1:] or [ast.Pass()]
    decorators = fields.get("decorator_list")
    if decorators:
        fields["decorator_list"] = [d for d in decorators if not _is_cacheable_decorator(d, namespace)]
    return type(node)(**fields)


def _definition_node(func: Callable[..., Any]) -> ast.AST | None:
    """The function's node in its parsed source, or None when there is no usable source."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    name = getattr(func, "__name__", "")
    if name == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        return lambdas[0] if len(lambdas) == 1 else None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return _normalized(node, getattr(inspect.unwrap(func), "__globals__", None))
    return None


def _code_value(code: types.CodeType) -> Any:
    consts = tuple(_code_value(c) if isinstance(c, types.CodeType) else _constant_value(c) for c in code.co_consts)
    return (
        "code",
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )


def source_hash_of_text(source: str, name: str | None = None) -> str:
    """The source hash of the first function (named ``name``, if given) defined in ``source``."""
    tree = ast.parse(textwrap.dedent(source))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (name is None or node.name == name):
            return _hash(("ast", _tree_value(_normalized(node, None))))
    raise ValueError(f"no function {name or ''} defined in the source given")


def _hash(value: Any) -> str:
    return hashlib.sha256(encode((SOURCE_FORMAT, value))).hexdigest()


def source_hash(func: Callable[..., Any]) -> str:
    """SHA-256 hex of ``func``'s normalized source, or of its code object when it has no source."""
    node = _definition_node(func)
    if node is not None:
        return _hash(("ast", _tree_value(node)))
    code = getattr(inspect.unwrap(func), "__code__", None)
    if isinstance(code, types.CodeType):
        return _hash(_code_value(code))
    # A callable with neither source nor bytecode (a builtin): only its name can identify it.
    return _hash(("opaque", f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}"))


__all__ = ["SOURCE_FORMAT", "source_hash", "source_hash_of_text"]
