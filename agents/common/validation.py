"""Config dataclasses <-> command line, with validation.

Configs are frozen dataclasses whose fields carry their own docstrings (a
string literal right after the field). This module turns them into argparse
options (``--field-name``, help from the docstring), applies overrides with
"did you mean" suggestions for unknown names, and checks field types, so every
config is validated when it is constructed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from hpo_env.errors import ConfigTypeError, unknown_name_error

C = TypeVar("C")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional) for ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _matches(value: Any, tp: Any) -> bool:
    tp, optional = _base_type(tp)
    if value is None:
        return optional
    origin = typing.get_origin(tp)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    return True


def check_field_types(config: Any) -> None:
    """Raise TypeError naming the field, the expected type and the value given."""
    hints = _resolved_types(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not _matches(value, hints[field.name]):
            raise ConfigTypeError(
                f"{type(config).__name__}.{field.name} expects {hints[field.name]}, got {value!r}"
            )


def apply_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """A copy of ``config`` with fields replaced (unknown names suggest the closest)."""
    names = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]
    for key in overrides:
        if key not in names:
            raise unknown_name_error(f"{type(config).__name__} field", key, names)
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    defaults: Any | None = None,
    default_label: str = "preset",
) -> None:
    """One ``--field-name`` option per field; values left unset are not reported.

    Tuples take several values (``--seeds 1 2 3``); booleans take true/false.

    Args:
        parser: The (sub)command's parser.
        cls: The config dataclass.
        defaults: The instance whose values the help shows.
        default_label: What those values are called in the help: ``"preset"`` for a
            command with presets (``train``), ``"default"`` for one without.
    """
    docs = field_docs(cls)
    hints = _resolved_types(cls)
    title = f"{cls.__name__} fields" + (
        " (override the preset)" if default_label == "preset" else ""
    )
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        tp, optional = _base_type(hints[field.name])
        default = getattr(defaults, field.name) if defaults is not None else None
        help_text = docs.get(field.name, "")
        if defaults is not None:
            help_text += f" ({default_label}: {default!r})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": help_text,
        }
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(type=_parse_bool, metavar="BOOL")
        elif origin is tuple:
            inner = typing.get_args(tp)[0]
            kwargs.update(type=inner, nargs="+" if not optional else "*")
        elif origin is typing.Literal:
            kwargs.update(choices=list(typing.get_args(tp)))
        elif tp in (int, float, str):
            kwargs.update(type=_none_or(tp) if optional else tp)
            if optional:
                kwargs["help"] += "; 'none' for None"
        else:
            kwargs.update(type=str)
        group.add_argument("--" + field.name.replace("_", "-"), **kwargs)


def _none_or(tp: Any) -> Any:
    """argparse type for an ``X | None`` field: ``none`` (any case) is None."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else tp(text)

    parse.__name__ = tp.__name__  # argparse names the type in its errors
    return parse


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    out = {}
    hints = _resolved_types(cls)
    for field in dataclasses.fields(cls):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            tp, _ = _base_type(hints[field.name])
            if typing.get_origin(tp) is tuple and isinstance(value, list):
                value = tuple(value)
            out[field.name] = value
    return out
