"""What each option of an options dataclass means, read from the comment after its field in the source.

    @dataclasses.dataclass(frozen=True)
    class DrumsOptions(ConverterOptions):
        max_bars: int | None = 100  # tracks are cut to this many bars before windowing; None: no cut

gives ``FieldDoc("max_bars", 100, "tracks are cut to this many bars before windowing; None: no cut")``.
A field without such a comment has an empty meaning; inherited fields are read from the class that
declares them.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

_FIELD = re.compile(r"^\s*(\w+)\s*:[^#]*#\s*(.*\S)\s*$")  # "name: type = default  # meaning"


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    name: str
    default: Any  # dataclasses.MISSING when the field has none
    meaning: str  # one line; "" when the source says nothing


def field_docs(options_type: type) -> list[FieldDoc]:
    """Every field of the dataclass ``options_type``, in order, with its default and meaning."""
    meanings: dict[str, str] = {}
    for klass in reversed(options_type.__mro__):
        if dataclasses.is_dataclass(klass):
            meanings.update(_comments(klass))
    return [FieldDoc(f.name, _default(f), meanings.get(f.name, "")) for f in dataclasses.fields(options_type)]


def _comments(klass: type) -> dict[str, str]:
    try:
        lines = inspect.getsource(klass).splitlines()
    except (OSError, TypeError):  # defined where there is no source (an interactive session)
        return {}
    return {m.group(1): m.group(2) for m in map(_FIELD.match, lines) if m}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING
