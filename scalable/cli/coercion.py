"""Text and flag parameters without pydantic: the one place scalable reaches into typer's coercion.

typer (0.2x with its own click) coerces every parameter value through a pydantic
``TypeAdapter`` built when the command runs: for ``scalable ls STORE`` that is pydantic's
import and a schema build, about 80 ms, to turn a ``str`` click parsed from ``argv`` into
the same ``str``, or an unset ``--help`` flag to ``None``. For parameters annotated ``str``
(or ``str | None``), ``list[str]`` or ``bool``, with no ``parser``, :func:`use_plain_text`
gives typer's parameter a coercion that returns such values as typer would (text and
bools as they are, ``None`` as typer returns it) and hands any other value to typer's own
coercion. Every other parameter (paths, numbers, choices) keeps typer's.

It relies on two typer internals, the parameter's ``type_descriptor`` and its
``_runtime_param`` slot (filled on first use); with a typer without them it does nothing,
and ``tests/test_cli_startup.py`` checks both paths give the same values.
"""

from __future__ import annotations

from typing import Any


class PlainText:
    """typer's coercion of a ``str``, ``list[str]`` or ``bool`` parameter, for values of that type already."""

    def __init__(self, plain: type, many: bool = False) -> None:
        self.plain = plain
        self.many = many
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        """What typer's runtime parameter returns for ``value`` (a value of the plain type is returned as it is)."""
        if value is None:
            return () if self.many else None
        if not self.many and type(value) is self.plain:
            return value
        if self.many and isinstance(value, (list, tuple)) and all(type(v) is self.plain for v in value):
            return list(value)
        return self.typer_coercion(param).coerce(value, param=param, ctx=ctx)

    def typer_coercion(self, param: Any) -> Any:
        """typer's own runtime parameter for ``param`` (built on first need; imports pydantic)."""
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(param.type_descriptor)
        return self._typer


def _plain_coercion(param: Any) -> PlainText | None:
    """The plain coercion of a ``str``, ``list[str]`` or ``bool`` parameter; ``None`` for any other."""
    descriptor = getattr(param, "type_descriptor", None)
    info = getattr(descriptor, "parameter_info", None)
    if descriptor is None or info is None or getattr(info, "parser", None) is not None:
        return None
    if getattr(descriptor, "file_annotation", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    annotation = descriptor.annotation
    many = param.multiple or param.nargs == -1
    if annotation in (str, bool) and not many:
        return PlainText(annotation)
    if annotation == list[str] and many:
        return PlainText(str, many=True)
    return None


def use_plain_text(params: list[Any]) -> None:
    """Give each ``str`` / ``list[str]`` / ``bool`` parameter of ``params`` a coercion that needs no pydantic."""
    for param in params:
        if getattr(param, "_runtime_param", "absent") is not None:
            continue  # not a typer parameter of this shape, or its coercion is built already
        plain = _plain_coercion(param)
        if plain is not None:
            param._runtime_param = plain


__all__ = ["PlainText", "use_plain_text"]
