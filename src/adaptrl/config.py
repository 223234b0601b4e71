"""Typed, frozen configs built from YAML files and ``--set key=value`` overrides.

Every algorithm and task family is a frozen dataclass; this module turns plain mappings
(parsed with ``yaml.safe_load``) into those dataclasses, checking every key and type.
Unknown keys and wrong types raise :class:`~adaptrl.errors.UserError`.

Hostile input is bounded before it is used: files over 1 MB, nesting deeper than
``MAX_DEPTH``, more than ``MAX_NODES`` values (YAML aliases included, so an "alias bomb"
is refused instead of expanded), integers beyond ``MAX_INT`` and non-finite or huge floats
all give one-line errors. Values in messages are shortened to ``MAX_SHOWN`` characters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from adaptrl.errors import UserError

#: Bounds that keep a hostile config from asking for absurd allocations.
MAX_INT = 10**9
MAX_DEPTH = 8
MAX_NODES = 10_000
MAX_SHOWN = 60


_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def short(value: Any) -> str:
    """``repr(value)``, cut to ``MAX_SHOWN`` characters, safe for any object."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _check_value(name: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise a UserError naming the field."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not isinstance(value, str | int | float | bool | None) or value not in choices:
            raise UserError(f"{name} must be one of {list(choices)}, got {short(value)}")
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(name, value, arg)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{name} has the wrong type")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise UserError(f"{name} must be a list, got {type(value).__name__}")
        if len(value) > 64:
            raise UserError(f"{name} is too long ({len(value)} items, at most 64)")
        item = args[0] if args else Any
        return tuple(_check_value(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, got {short(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{name} must be an integer, got {short(value)}")
        if abs(value) > MAX_INT:
            raise UserError(f"{name} is out of range: {short(value)}")
        return value
    if hint is float:
        if isinstance(value, str) and _EXPONENT.match(value):
            value = float(value)  # YAML 1.1 reads 3e-4 (no dot in the mantissa) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{name} must be a number, got {short(value)}")
        if isinstance(value, int) and abs(value) > 10**12:
            raise UserError(f"{name} must be a finite number of sensible size, got {short(value)}")
        value = float(value)
        if not math.isfinite(value) or abs(value) > 1e12:
            raise UserError(f"{name} must be a finite number of sensible size, got {short(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{name} must be a string, got {short(value)}")
        if len(value) > 10_000:
            raise UserError(f"{name} is too long ({len(value)} characters)")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported config type {hint!r} for {name}")


class OptionError(ValueError):
    """Raised by a config dataclass's ``__post_init__`` to refuse the value of one field,
    so that the message can name the option as the user wrote it (``--iterations``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: Mapping[str, Any] | None, *, where: str = "",
              names: Mapping[str, str] | None = None) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``; unspecified fields keep defaults.

    Messages name a field ``where + field``, or ``names[field]`` where given (a command-line
    flag such as ``--iterations``)."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise UserError(f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = _type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(short(k) if not isinstance(k, str) else k[:MAX_SHOWN]
                     for k in data if not isinstance(k, str) or k not in fields)
    if unknown:
        raise UserError(
            f"unknown config key {where}{unknown[0]!s} (valid: {', '.join(sorted(fields))})"
        )
    def label(field: str) -> str:
        return (names or {}).get(field, f"{where}{field}")

    values = {k: _check_value(label(k), v, hints[k]) for k, v in data.items()}
    try:
        return cls(**values)
    except OptionError as e:
        got = f", got {short(values[e.field])}" if e.field in values else ""
        raise UserError(f"{label(e.field)} {e.problem}{got}") from None
    except (ValueError, TypeError, ArithmeticError) as e:  # __post_init__ validation
        raise UserError(f"{where.rstrip('.') or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def replace(obj: Any, changes: Mapping[str, Any], *, where: str = "") -> Any:
    """``dataclasses.replace`` with the same checks as :func:`from_dict`."""
    return from_dict(type(obj), {**to_dict(obj), **dict(changes)}, where=where)


def _check_size(x: Any, source: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` or more than ``MAX_NODES`` values. Shared
    (aliased) YAML nodes count every time they are reached, so the walk is bounded too."""
    seen = 0
    stack = [(x, 0)]
    while stack:
        node, level = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise UserError(f"{source}: config is too large (more than {MAX_NODES} values)")
        if isinstance(node, Mapping | list | tuple | set):
            if level >= MAX_DEPTH:
                raise UserError(f"{source}: config nests too deeply (at most {MAX_DEPTH} levels)")
            items = node.values() if isinstance(node, Mapping) else node
            stack.extend((v, level + 1) for v in items)
            if isinstance(node, Mapping):
                stack.extend((k, level + 1) for k in node)


def load_yaml(text: str, *, source: str) -> dict[str, Any]:
    """Parse a YAML config safely: a mapping with string keys, bounded nesting."""
    if len(text) > 1_000_000:
        raise UserError(f"{source}: config file is too large")
    data = _safe_yaml(text, source=source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: config must be a mapping of keys to values")
    _check_size(data, source)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise UserError(f"{source}: config keys must be strings, got {short(bad[0])}")
    return data


def _nesting_hint(text: str) -> int:
    """An upper bound on how deeply ``text`` can nest: open flow brackets, and distinct
    indentation levels. Checked before parsing, because PyYAML parses recursively and a
    few thousand open brackets cost seconds before its ``RecursionError``."""
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", text):
        depth = max(depth + (1 if ch in "[{" else -1), 0)
        deepest = max(deepest, depth)
    indents = {len(m.group(1)) for m in re.finditer(r"^( *)\S", text, re.MULTILINE)}
    return max(deepest, len(indents))


def _safe_yaml(text: str, *, source: str) -> Any:
    """``yaml.safe_load`` (no tags that build objects or run code) with every failure as a
    one-line :class:`UserError`."""
    if _nesting_hint(text) > 4 * MAX_DEPTH:
        raise UserError(f"{source}: config nests too deeply (at most {MAX_DEPTH} levels)")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}: malformed YAML{at}") from None
    except RecursionError:
        raise UserError(f"{source}: config nests too deeply") from None
    except (ValueError, TypeError, OverflowError):  # e.g. an integer of 5000 digits
        raise UserError(f"{source}: malformed YAML (a value cannot be read)") from None


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set a.b=value``; the value is read as YAML (``3``, ``0.1``, ``true``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key=value, got {short(item)}")
    if len(item) > 100_000:
        raise UserError(f"--set {short(key)}: value is too long")
    try:
        value = _safe_yaml(raw, source=f"--set {key.strip()[:MAX_SHOWN]}") if raw.strip() else ""
    except UserError as e:
        if "malformed YAML" not in str(e) or "cannot be read" in str(e):
            raise
        value = raw  # not YAML: take it as a plain string
    _check_size(value, f"--set {key.strip()[:MAX_SHOWN]}")
    return key.strip().split("."), value


def task_sets(items: list[str], *, command: str) -> dict[str, Any]:
    """``--set tasks.KEY=VALUE`` items of a command that takes only family options (``eval``,
    ``check``, ``advise``, ``sweep``) as ``{KEY: VALUE}``."""
    options = {}
    for item in items:
        path, value = parse_set(item)
        if len(path) != 2 or path[0] != "tasks":
            raise UserError(f"{command} --set takes only tasks.KEY=VALUE, got {short(item)}")
        options[path[1]] = value
    return options
