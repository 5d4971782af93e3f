"""What the OME-NGFF validators share: problem records, JSON value checks, the unit lists.

Every version's rules (:mod:`cellvol.ome._validation` for 0.4 and 0.5,
:mod:`cellvol.ome._validation06` for 0.6) report through a :class:`Collector` and read JSON
values with these helpers, so a problem reads the same whatever version found it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SPACE_UNITS",
    "TIME_UNITS",
    "Collector",
    "Problem",
    "array",
    "is_integer",
    "is_number",
    "obj",
    "required",
    "typed",
]

SPACE_UNITS: Final = frozenset(
    [
        "angstrom",
        "attometer",
        "centimeter",
        "decimeter",
        "exameter",
        "femtometer",
        "foot",
        "gigameter",
        "hectometer",
        "inch",
        "kilometer",
        "megameter",
        "meter",
        "micrometer",
        "mile",
        "millimeter",
        "nanometer",
        "parsec",
        "petameter",
        "picometer",
        "terameter",
        "yard",
        "yoctometer",
        "yottameter",
        "zeptometer",
        "zettameter",
    ]
)
TIME_UNITS: Final = frozenset(
    [
        "attosecond",
        "centisecond",
        "day",
        "decisecond",
        "exasecond",
        "femtosecond",
        "gigasecond",
        "hectosecond",
        "hour",
        "kilosecond",
        "megasecond",
        "microsecond",
        "millisecond",
        "minute",
        "nanosecond",
        "petasecond",
        "picosecond",
        "second",
        "terasecond",
        "yoctosecond",
        "yottasecond",
        "zeptosecond",
        "zettasecond",
    ]
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One way a document breaks the specification.

    Attributes
    ----------
    path
        JSON pointer to the offending value, e.g. ``/ome/multiscales/0/axes/1/unit``.
    message
        What is wrong and what was expected.
    strict
        True when only a recommendation (a *strict* rule) is broken.
    note
        True for a rule the specification's text states but its own conformance documents do
        not keep (0.6): reported, but it does not make a document invalid.
    """

    path: str
    message: str
    strict: bool = False
    note: bool = False

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class Collector:
    """The problems found so far in one document."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, *, strict: bool = False, note: bool = False) -> None:
        """Record a problem at ``path``."""
        self.problems.append(Problem(path, message, strict, note))


# -- JSON value helpers ------------------------------------------------------------------------


def is_number(value: object) -> bool:
    """True for a JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """True for a JSON number with no fractional part."""
    return is_number(value) and float(value).is_integer()  # type: ignore[arg-type]


def array(
    value: object, path: str, out: Collector, *, min_items: int = 0, unique: bool = False
) -> Sequence[Any] | None:
    """``value`` if it is a JSON array, checking its length and uniqueness; else None."""
    if not isinstance(value, list):
        out.add(path, f"must be an array, got {type(value).__name__}")
        return None
    if len(value) < min_items:
        out.add(path, f"must have at least {min_items} item(s), got {len(value)}")
    if unique:
        seen: set[str] = set()
        for i, item in enumerate(value):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                out.add(f"{path}/{i}", "duplicates an earlier item; items must be unique")
            seen.add(key)
    return value


def obj(value: object, path: str, out: Collector) -> Mapping[str, Any] | None:
    """``value`` if it is a JSON object; else None, with a problem recorded."""
    if not isinstance(value, Mapping):
        out.add(path, f"must be an object, got {type(value).__name__}")
        return None
    return value


def required(
    obj: Mapping[str, Any], keys: Sequence[str], path: str, out: Collector, *, strict: bool = False
) -> None:
    """Record each of ``keys`` missing from ``obj``."""
    for key in keys:
        if key not in obj:
            out.add(f"{path}/{key}", f"'{key}' is required", strict=strict)


def typed(obj: Mapping[str, Any], key: str, path: str, out: Collector, kind: str) -> None:
    """Check the type of an optional field."""
    if key not in obj:
        return
    value = obj[key]
    ok = {
        "string": isinstance(value, str),
        "number": is_number(value),
        "integer": is_integer(value),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, Mapping),
    }[kind]
    if not ok:
        out.add(f"{path}/{key}", f"must be a {kind}, got {value!r}")
