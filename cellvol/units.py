"""Frozen value objects that callers pass to cellvol: voxel sizes with units.

Nothing here does I/O; every object validates itself on construction so that a bad value is
reported where it was made, not deep inside a write.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from cellvol.errors import InvalidInputError

__all__ = [
    "SPATIAL_AXES",
    "UNIT_ALIASES",
    "UNIT_IN_NM",
    "VoxelSize",
    "convert_lengths",
    "normalize_unit",
]

#: Spatial axes of every volume cellvol writes, slowest-varying first.
SPATIAL_AXES: Final = ("z", "y", "x")

#: Length units OME-NGFF names (the UDUNITS-2 spellings), with their size in nanometres.
UNIT_IN_NM: Final[dict[str, float]] = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
    "picometer": 1e-3,
}

#: Short spellings users type, mapped to the OME-NGFF unit name.
UNIT_ALIASES: Final[dict[str, str]] = {
    "a": "angstrom",
    "å": "angstrom",
    "ang": "angstrom",
    "nm": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "pm": "picometer",
}


def normalize_unit(unit: str) -> str:
    """Return the OME-NGFF name of a length unit given in any common spelling.

    Parameters
    ----------
    unit
        For example ``"nm"``, ``"nanometer"``, ``"Å"`` or ``"um"``.

    Raises
    ------
    InvalidInputError
        If the unit is not a length unit OME-NGFF knows.
    """
    key = unit.strip().lower()
    key = UNIT_ALIASES.get(key, key)
    if key not in UNIT_IN_NM:
        known = ", ".join(sorted(UNIT_IN_NM))
        raise InvalidInputError(f"unknown length unit {unit!r}; expected one of {known}")
    return key


def convert_lengths(values: Iterable[float], unit: str, target: str) -> tuple[float, ...]:
    """Express lengths given in ``unit`` in ``target`` (any spelling :func:`normalize_unit` knows).

    Every unit is a power of ten of another, so the decimal a value prints as is shifted
    exactly and rounded once: 11.4 Å becomes 1.14 nm, not the 1.1400000000000001 of binary
    division.
    """
    source, goal = normalize_unit(unit), normalize_unit(target)
    exponent = round(math.log10(UNIT_IN_NM[source] / UNIT_IN_NM[goal]))
    if exponent == 0:
        return tuple(float(v) for v in values)
    return tuple(float(Decimal(repr(float(v))).scaleb(exponent)) for v in values)


@dataclass(frozen=True, slots=True)
class VoxelSize:
    """The physical size of one voxel along ``z``, ``y`` and ``x``.

    Parameters
    ----------
    z, y, x
        Positive, finite sizes in ``unit``.
    unit
        An OME-NGFF length unit or a common abbreviation (``"nm"``, ``"Å"``, ``"um"``); stored
        under its OME-NGFF name.

    Examples
    --------
    >>> VoxelSize(30, 5, 5, "nm").to("nanometer")
    VoxelSize(z=30.0, y=5.0, x=5.0, unit='nanometer')
    >>> VoxelSize.of(1.5)
    VoxelSize(z=1.5, y=1.5, x=1.5, unit='nanometer')
    """

    z: float
    y: float
    x: float
    unit: str = "nanometer"

    def __post_init__(self) -> None:
        for axis in SPATIAL_AXES:
            value = getattr(self, axis)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"voxel size along {axis} must be a number, got {value!r}"
                ) from None
            if not math.isfinite(number) or number <= 0:
                raise InvalidInputError(
                    f"voxel size along {axis} must be positive and finite, got {value!r}"
                )
            object.__setattr__(self, axis, number)
        object.__setattr__(self, "unit", normalize_unit(self.unit))

    @classmethod
    def of(cls, value: VoxelSize | float | Sequence[float], unit: str = "nanometer") -> VoxelSize:
        """Build a voxel size from a scalar (isotropic), a ``(z, y, x)`` triple or a VoxelSize.

        Raises
        ------
        InvalidInputError
            If a sequence does not have exactly three entries.
        """
        if isinstance(value, VoxelSize):
            return value
        if isinstance(value, int | float):
            return cls(value, value, value, unit)
        values = list(value)
        if len(values) != 3:
            raise InvalidInputError(
                f"voxel size needs three values (z, y, x), got {len(values)}: {values!r}"
            )
        return cls(values[0], values[1], values[2], unit)

    @property
    def zyx(self) -> tuple[float, float, float]:
        """The sizes as a ``(z, y, x)`` tuple in :attr:`unit`."""
        return (self.z, self.y, self.x)

    def to(self, unit: str) -> VoxelSize:
        """Return the same size expressed in another length unit."""
        target = normalize_unit(unit)
        z, y, x = convert_lengths(self.zyx, self.unit, target)
        return VoxelSize(z, y, x, target)

    def scaled(self, factors: Iterable[float]) -> VoxelSize:
        """Return the voxel size after downsampling by per-axis ``factors``."""
        fz, fy, fx = tuple(factors)
        return VoxelSize(self.z * fz, self.y * fy, self.x * fx, self.unit)

    def __str__(self) -> str:
        return f"{self.z:g} × {self.y:g} × {self.x:g} {self.unit}"
