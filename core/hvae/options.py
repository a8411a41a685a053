"""Options dataclasses: overrides by keyword or by ``key=value`` strings from the command line."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from typing import Any, Mapping, Sequence

from hvae.errors import CheckpointError, HvaeError, InvalidArgument


def field_names(options_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(options_type)]


def apply_overrides(options: Any, overrides: Mapping[str, Any], what: str = "options") -> Any:
    """``dataclasses.replace`` with a clear error for a name the dataclass does not have (lists taken as the
    tuples a field holds), and
    :class:`~hvae.errors.InvalidArgument` for a value that is not of its field's type (a string for a number,
    a number that is not finite)."""
    if not overrides:
        return options
    names = field_names(type(options))
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise HvaeError(f"Unknown option(s) for {what}: {', '.join(unknown)}. Valid: {', '.join(names)}.")
    overrides = typed_values(type(options), overrides)  # lists (JSON's tuples) as tuples
    hints = typing.get_type_hints(type(options))
    for key, value in overrides.items():
        if not _fits(value, hints[key]):
            raise InvalidArgument(f"Option {key} of {what} must be {_kind(hints[key])}, not {value!r}.")
    return dataclasses.replace(options, **overrides)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the field type ``annotation`` (bool, int, float (finite; an int will do), str,
    None, unions and tuples of them; anything else is taken as it is)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        inner = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return not args or (len(inner) == len(value) and all(map(_fits, value, inner)))
    if annotation in (int, float) and isinstance(value, bool):
        return False
    if annotation is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if annotation in (bool, int, str):
        return isinstance(value, numbers.Integral if annotation is int else annotation)
    return True


def _kind(annotation: Any) -> str:
    """A field type in words: "a whole number or None"."""
    words = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string",
             type(None): "None"}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return "a tuple"
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _coerce(text: str, annotation: Any, key: str) -> Any:
    """Turn a command-line string into the field's type (int, float, bool, None, tuples, literals)."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:  # Optional[int] and int | None
        refused = None
        for arg in args:
            try:
                return _coerce(text, arg, key)
            except ValueError:
                continue
            except HvaeError as exc:  # read, but out of range (not finite, say): that is the reason
                refused = exc
        raise refused or HvaeError(f"Option {key}: cannot read {text!r}")
    if annotation is bool:
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise HvaeError(f"Option {key}: expected true/false, got {text!r}")
    if annotation is int:
        return int(text)
    if annotation is float:
        number = float(text)
        if not math.isfinite(number):
            raise HvaeError(f"Option {key}: {text!r} is not a finite number")
        return number
    if annotation is str:
        return text
    if origin in (tuple, list):
        value = json.loads(text) if text.strip().startswith("[") else [v for v in text.split(",") if v.strip()]
        inner = args[0] if args else str
        return tuple(_coerce(str(v), inner, key) for v in value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(options_type: type, pairs: Sequence[str], what: str = "options") -> dict[str, Any]:
    """Parse ``["slice_bars=4", "roll_input=true"]`` against ``options_type``'s field types."""
    hints = typing.get_type_hints(options_type)
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise HvaeError(f"Option {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in hints:
            raise HvaeError(f"Unknown option {key!r} for {what}. Valid: {', '.join(field_names(options_type))}.")
        try:
            result[key] = _coerce(value, hints[key], key)
        except ValueError:
            raise HvaeError(f"Option {key}: cannot read {value!r} as {hints[key]}") from None
    return result


def from_jsonable(cls: type, data: Any) -> Any:
    """Rebuild a (frozen, possibly nested) dataclass from ``dataclasses.asdict`` output read from JSON.

    JSON turns tuples into lists; this turns them back, following the field types.
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"Expected a mapping for {cls.__name__}, found {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{cls.__name__} has no field(s) {', '.join(unknown)}: the checkpoint was written "
                              f"by a different version of the code that defines it.")
    return cls(**typed_values(cls, data))


def typed_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``'s values as the dataclass ``cls``'s fields hold them: lists (as JSON gives tuples back)
    turned into tuples, mappings into the nested dataclasses, following the field types; keys that are
    not fields are passed on as they are."""
    hints = typing.get_type_hints(cls)
    return {k: _typed(hints.get(k, Any), v) for k, v in data.items()}


def _typed(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None:
        return None
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_jsonable(annotation, value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_typed(a, v) for a, v in zip(args, value))
        return tuple(value)
    if args and origin is not None and origin not in (list, dict, tuple):  # Optional / Union
        for arg in args:
            if arg is type(None):
                continue
            if (dataclasses.is_dataclass(arg) and isinstance(value, dict)) or \
                    (typing.get_origin(arg) is tuple and isinstance(value, list)):
                return _typed(arg, value)
    return value
