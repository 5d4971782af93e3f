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
    "ORIGIN_LIMIT_NM",
    "UNIT_IN_NM",
    "VOXEL_SIZE_RANGE_NM",
    "VoxelSize",
    "check_placement",
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

#: The voxel sizes cellvol stores, in nanometres: from a femtometre (1e-6 nm), four orders of
#: magnitude below the finest sampling any microscope reaches (about 0.01 nm, cryo-EM pixels
#: of a tenth of an ångström), to a metre (1e9 nm), far above the coarsest (millimetre CT
#: voxels). A size outside is not a measurement but a corrupt header or a wrong unit (1e-41 nm
#: is float32 noise, 1e36 nm uninitialised memory), and a viewer fed it draws nothing useful.
VOXEL_SIZE_RANGE_NM: Final = (1e-6, 1e9)

#: The largest distance from the origin of its frame an image may start at, in nanometres (a
#: kilometre): beyond any stage's travel, while a float32 header holding garbage (1e38) is not.
ORIGIN_LIMIT_NM: Final = 1e12

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


def check_placement(
    voxel: VoxelSize, origin: Sequence[float] | None = None, *, where: str = ""
) -> None:
    """Refuse a voxel size or origin no instrument could have produced.

    Parameters
    ----------
    voxel
        Must lie within :data:`VOXEL_SIZE_RANGE_NM` along every axis.
    origin
        ``(z, y, x)`` in ``voxel``'s unit; each must be finite and within
        :data:`ORIGIN_LIMIT_NM` of zero.
    where
        What the values come from (a file and its field), to begin the message with.

    Raises
    ------
    InvalidInputError
        Naming the axis, the value and the accepted range.
    """
    prefix = f"{where}: " if where else ""
    low, high = VOXEL_SIZE_RANGE_NM
    in_nm = convert_lengths(voxel.zyx, voxel.unit, "nanometer")
    for axis, value, nm in zip(SPATIAL_AXES, voxel.zyx, in_nm, strict=True):
        if not low <= nm <= high:
            given = f"{value:g} nm" if voxel.unit == "nanometer" else f"{value:g} {voxel.unit}"
            raise InvalidInputError(
                f"{prefix}voxel size along {axis} is {given}"
                f"{'' if voxel.unit == 'nanometer' else f' ({nm:g} nm)'}, outside the {low:g} nm "
                f"to {high:g} nm cellvol accepts: a corrupt value or a wrong unit"
            )
    if origin is None:
        return
    values = tuple(float(v) for v in origin)
    if not all(math.isfinite(v) for v in values):
        raise InvalidInputError(f"{prefix}origin {values} must be three finite numbers")
    for axis, value, nm in zip(
        SPATIAL_AXES, values, convert_lengths(values, voxel.unit, "nanometer"), strict=True
    ):
        if abs(nm) > ORIGIN_LIMIT_NM:
            raise InvalidInputError(
                f"{prefix}origin along {axis} is {value:g} {voxel.unit} ({nm:g} nm), farther "
                f"than the {ORIGIN_LIMIT_NM:g} nm cellvol accepts: a corrupt value or a wrong unit"
            )
