"""Strict loading of frozen config dataclasses from plain mappings (YAML at the edge).

Unknown keys are an error that lists the valid ones; missing required keys likewise.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from orgseg.errors import ConfigError

T = TypeVar("T")


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return load_dataclass(hint, value, where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args if args else (Any, Any)
        return {
            _convert(k, kt, f"{where} key"): _convert(v, vt, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    return value


def load_dataclass(cls: type[T], data: Any, *, where: str = "config", base: T | None = None) -> T:
    """Build ``cls`` from a mapping, checking keys and types. Keys not given take the
    class's defaults, or ``base``'s values when given; a nested section whose default is
    an instance (``inference: EngineOptions = PIPELINE_DEFAULTS``) starts from it.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     a: int
    ...     b: str = "x"
    >>> load_dataclass(C, {"a": 1})
    C(a=1, b='x')
    >>> load_dataclass(C, {"a": 1, "c": 2})
    Traceback (most recent call last):
    ...
    orgseg.errors.ConfigError: config: unknown key(s) ['c']; valid keys are ['a', 'b']
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"load_dataclass needs a dataclass type, got {cls!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            default = f.default
            over = f.metadata.get("overrides_of")
            if over is not None:  # a mapping of partial overrides of a sibling field
                kwargs[name] = _overrides(data[name], _sibling(cls, over, kwargs, base),
                                          where=f"{where}.{name}")  # fmt: skip
            elif dataclasses.is_dataclass(default) and not isinstance(default, type):
                kwargs[name] = load_dataclass(
                    type(default), data[name], where=f"{where}.{name}", base=default
                )
            else:
                kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif base is not None:
            kwargs[name] = getattr(base, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def _sibling(cls: type, name: str, kwargs: Mapping[str, Any], base: Any) -> Any:
    """The value the field ``name`` takes (loaded, from ``base`` or its default)."""
    if name in kwargs:
        return kwargs[name]
    if base is not None:
        return getattr(base, name)
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _overrides(value: Any, base: Any, *, where: str) -> dict[str, Any]:
    """``{key: partial mapping}`` -> ``{key: base with those fields replaced}``: a field
    declared ``field(metadata={"overrides_of": "default"})`` merges each entry onto the
    sibling ``default`` rather than onto the class's defaults."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return {
        str(k): load_dataclass(type(base), v, where=f"{where}.{k}", base=base)
        for k, v in value.items()
    }


def field_help(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines written above each field of a dataclass, joined: the one
    description of a field, shown by the CLI's help and the configuration reference."""
    out: dict[str, str] = {}
    pending: list[str] = []
    last = ""  # a comment covers the fields right below it, up to a blank line
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:", text)
        if m and not text.startswith(("def ", "class ", "@", "return")):
            last = " ".join(pending) if pending else last
            if last:
                out[m.group(1)] = last
        elif not text.startswith(")"):  # not the end of a multi-line field
            last = ""
        pending = []
    return out
