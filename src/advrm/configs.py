"""Typed configs: plain ``@dataclass`` classes, filled from YAML files, dicts and command-line overrides.

Every command of the CLI is a function of one config dataclass (TRL's pattern: a documented config
next to the code that uses it). :func:`load_config` is the one place where untrusted values enter
those dataclasses, so it checks everything a typo can break, and says how to fix it:

- unknown keys, with the closest valid key (``lrr`` -> did you mean ``lr``?) and the list of valid keys;
- types: ``bool``, ``int``, ``float`` (an ``int`` is accepted and converted, so ``lr: 1`` and ``lr: 1.0``
  give the same config and the same hash), ``str``, ``Path`` (from a string), ``Literal[...]``,
  ``X | None``, unions, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, nested dataclasses, ``Any``;
  ``bool`` is never accepted for ``int``/``float`` (Python's ``True == 1`` would hide a mistake);
- ranges declared on the field, enforced for every config class alike::

      beta: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "weight of the KL term"})

  (``min``/``max`` are inclusive, ``gt``/``lt`` exclusive; ``help`` is quoted in error messages);
- a ``ValueError`` raised by the class's ``__post_init__`` (cross-field checks) becomes an
  :class:`AdvrmError` too.

Floats must be finite: configs are stored as JSON (manifests, ``world.json``), which has no NaN or
infinity. YAML is read with ``yaml.safe_load`` semantics, except that ``1e-3`` is read as a float
(plain PyYAML follows YAML 1.1 and reads it as the string ``"1e-3"``, a classic learning-rate bug).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .errors import AdvrmError
from .io import to_jsonable

__all__ = ["config_to_dict", "dump_yaml", "load_config", "load_yaml", "parse_overrides"]

T = TypeVar("T")

_BOUNDS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "min": (operator.ge, "at least"),
    "max": (operator.le, "at most"),
    "gt": (operator.gt, "greater than"),
    "lt": (operator.lt, "less than"),
}


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot or sign (``1e-3``, ``5e5``)."""


class _YamlDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes the strings ``_YamlLoader`` would read as floats (``"1e-3"``)."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _cls in (_YamlLoader, _YamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text that :func:`load_yaml` reads back as ``data`` (plain JSON types, keys in given order).

    Non-ASCII text is written as is when that reads back unchanged, escaped otherwise: PyYAML writes
    some characters (``\x85``, ``\u2028``) raw that its reader then takes for line breaks.
    """
    text = yaml.dump(dict(data), Dumper=_YamlDumper, sort_keys=False, allow_unicode=True)
    if yaml.load(text, Loader=_YamlLoader) == data:  # noqa: S506 - a SafeLoader subclass
        return text
    return yaml.dump(dict(data), Dumper=_YamlDumper, sort_keys=False, allow_unicode=False)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a dict; an empty file is an empty config."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvrmError(f"{path}: no such config file; check the path") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise AdvrmError(f"{path}: cannot read as a YAML config ({e})") from None
    try:
        data = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise AdvrmError(f"{path}{where}: not valid YAML ({problem}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdvrmError(f"{path}: a YAML {type(data).__name__}, expected a mapping of key: value settings")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["rm.lr=1e-3", "name=x"]`` -> ``{"rm.lr": 0.001, "name": "x"}``, values read as YAML scalars.

    This is what ``--set key=value`` options turn into before :func:`load_config` merges them.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise AdvrmError(f"override {item!r} is not key=value; write e.g. rm.lr=0.001")
        try:
            out[key.strip()] = yaml.load(text, Loader=_YamlLoader) if text.strip() else ""  # noqa: S506
        except yaml.YAMLError:
            out[key.strip()] = text
    return out


def _merge(base: Mapping[Any, Any], overrides: Mapping[str, Any]) -> dict[Any, Any]:
    """Deep-merge ``overrides`` (nested dicts or dotted keys like ``rm.lr``) into a copy of ``base``."""
    merged = dict(base)
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        if rest:
            value = {rest: value}
        old = merged.get(head)
        if isinstance(value, Mapping):  # merged into a section, or a fresh one with its dotted keys expanded
            value = _merge(old if isinstance(old, Mapping) else {}, value)
        merged[head] = value
    return merged


# --------------------------------------------------------------------------------------------------
# Type checking


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if isinstance(tp, type) and origin is None:
        return "a mapping" if dataclasses.is_dataclass(tp) else tp.__name__
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _hint(tp: Any, value: Any) -> str:
    if tp in (int, float) and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (write the number without quotes)"
    if tp is str and isinstance(value, bool):
        return " (YAML reads yes/no/on/off/true/false as booleans; quote the value)"
    return ""


def _mismatch(key: str, tp: Any, value: Any) -> AdvrmError:
    return AdvrmError(f"config key {key!r}: expected {_type_name(tp)}, got {_show(value)}{_hint(tp, value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_float(key: str, tp: Any, value: Any) -> float:
    if not (_is_int(value) or isinstance(value, float)):
        raise _mismatch(key, tp, value)
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise AdvrmError(f"config key {key!r}: {value!r} is not a finite number; configs are stored as JSON")
    return out


def _convert_union(key: str, tp: Any, value: Any) -> Any:
    arms = [a for a in get_args(tp) if a is not type(None)]
    if value is None and len(arms) < len(get_args(tp)):
        return None
    if len(arms) == 1:  # X | None: X's own, more precise, error
        return _convert(key, arms[0], value)
    for arm in arms:
        try:
            return _convert(key, arm, value)
        except AdvrmError:
            continue
    raise _mismatch(key, tp, value)


def _convert_items(key: str, tp: Any, origin: Any, value: Any) -> Any:
    args = get_args(tp)
    if origin is dict or origin is Mapping:
        if not isinstance(value, Mapping):
            raise _mismatch(key, tp, value)
        key_tp, value_tp = args or (str, Any)
        return {
            _convert(f"{key}.{k}", key_tp, k): _convert(f"{key}.{k}", value_tp, v) for k, v in value.items()
        }
    if not isinstance(value, list | tuple):
        raise _mismatch(key, tp, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise AdvrmError(f"config key {key!r}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    item_tp = args[0] if args else Any
    items = [_convert(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


_SCALARS: dict[type, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: _is_int,
    str: lambda v: isinstance(v, str),
}


def _convert(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in that type (``Path``, ``tuple``...)."""
    origin = get_origin(tp) or (tp if tp in (list, tuple, dict) else None)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(key, tp, value)
    if origin is Literal:
        for choice in get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
        raise _mismatch(key, tp, value)
    if origin in (list, tuple, dict, Sequence, Mapping):
        return _convert_items(key, tp, origin, value)
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _mismatch(key, tp, value)
        return value
    if tp is float:
        return _to_float(key, tp, value)
    if tp is type(None):
        if value is not None:
            raise _mismatch(key, tp, value)
        return None
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if not isinstance(value, str | PurePath):
            raise _mismatch(key, tp, value)
        return tp(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _mismatch(key, tp, value)
        return _build(tp, value, f"{key}.")
    raise TypeError(f"config key {key!r}: load_config does not support the annotation {tp!r}")


def _check_bounds(f: dataclasses.Field[Any], value: Any, key: str) -> None:
    if not (_is_int(value) or isinstance(value, float)):
        return
    help_text = f.metadata.get("help")
    why = f" ({help_text})" if help_text else ""
    for name, (ok, words) in _BOUNDS.items():
        if name in f.metadata and not ok(value, f.metadata[name]):
            raise AdvrmError(f"config key {key!r}: must be {words} {f.metadata[name]!r}, got {value!r}{why}")


def _build(cls: type[T], data: Mapping[Any, Any], prefix: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    section = f" in {prefix[:-1]!r}" if prefix else ""
    for raw_key in data:
        if raw_key not in fields:
            close = difflib.get_close_matches(str(raw_key), list(fields), n=1)
            suggestion = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise AdvrmError(
                f"unknown config key {prefix + str(raw_key)!r}{suggestion}; valid keys{section}: {', '.join(fields)}"
            )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(prefix + name, hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            help_text = f" ({f.metadata['help']})" if "help" in f.metadata else ""
            raise AdvrmError(f"missing config key {prefix + name!r}: {_type_name(hints[name])}{help_text}")
    try:
        instance = cls(**kwargs)
    except ValueError as e:  # __post_init__ cross-field validation
        raise AdvrmError(f"config{section}: {e}") from None
    for name, f in fields.items():
        _check_bounds(f, getattr(instance, name), prefix + name)
    return instance


def load_config(
    cls: type[T],
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build a ``cls`` instance from defaults, then ``source`` (a dict or a YAML file), then ``overrides``.

    ``overrides`` may be nested (``{"rm": {"lr": 0.001}}``) or dotted (``{"rm.lr": 0.001}``, what
    :func:`parse_overrides` returns). Raises :class:`AdvrmError` for every user mistake (see the module
    docstring); ``TypeError`` only for an annotation this loader does not support, a bug in ``cls``.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    if source is None:
        data: Mapping[Any, Any] = {}
    elif isinstance(source, Mapping):
        data = source
    else:
        data = load_yaml(source)
    return _build(cls, _merge(data, overrides or {}), "")


def config_to_dict(instance: Any) -> dict[str, Any]:
    """A config as plain JSON types (nested dicts, lists, strings for paths): what manifests store.

    ``load_config(type(c), config_to_dict(c)) == c`` for every config ``load_config`` accepts.
    """
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(instance).__name__}")
    return to_jsonable(instance)
