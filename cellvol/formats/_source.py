"""What every input format yields: a :class:`Source` (a lazy array, voxel size, provenance)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from cellvol.errors import CellvolError, InvalidInputError
from cellvol.units import SPATIAL_AXES, VoxelSize

__all__ = [
    "HDF5_SUFFIXES",
    "MRC_SUFFIXES",
    "TIFF_SUFFIXES",
    "Source",
    "float32_meant",
    "metadata_field",
    "metadata_number",
    "rational_meant",
]

MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


@dataclass(frozen=True)
class Source:
    """An input opened for conversion.

    Attributes
    ----------
    array
        A lazy array with ``shape``, ``dtype`` and numpy-style slicing, over ``axes``.
    voxel_size
        The voxel size the file records, or None when it records none (or only part of it).
    description
        What the input is, in one line, for messages and the provenance record.
    files
        The files the data comes from, in order (their digests go into the provenance).
    origin
        Physical position of the first voxel's centre along ``z, y, x``, in nanometres, when
        the file records one.
    image_stack
        True when ``z`` indexes separate images rather than a spatial axis (an MRC image stack):
        the pyramid then never downsamples along ``z``.
    details
        Format-specific facts worth keeping (header fields, extended header...), JSON-ready.
    block_bytes
        Bytes a read decodes at the least, whatever region it asks for: a compressed strip or
        tile decoded whole. 0 where a region is read alone (raw or memory-mapped data).
    axes
        The array's axes: ``z, y, x``, or with channels ``c, z, y, x`` or ``t, c, z, y, x``.
    channel_names, channel_colors
        The channels' names and ``RRGGBB`` colours, where the input records them.
    """

    array: Any
    voxel_size: VoxelSize | None
    description: str
    files: tuple[str, ...] = ()
    origin: tuple[float, float, float] | None = None
    image_stack: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    block_bytes: int = 0
    axes: tuple[str, ...] = SPATIAL_AXES
    channel_names: tuple[str, ...] | None = None
    channel_colors: tuple[str, ...] | None = None


# Every reader reads a file's metadata field by field through these two, so that whatever a
# hostile or damaged file holds (text where a number belongs, an undecodable escape, a link
# that loops) ends as one InvalidInputError naming the file and the field, never as the
# parsing library's own error.


@contextlib.contextmanager
def metadata_field(file: str, field: str) -> Iterator[None]:
    """Read one metadata ``field`` of ``file``: any error inside is the file's, and says so.

    Raises
    ------
    InvalidInputError
        ``"<file>: unreadable <field> (<the parser's message>)"``, from the parser's error.
    """
    try:
        yield
    except CellvolError:
        raise
    except (ValueError, TypeError, ArithmeticError, LookupError, RuntimeError, OSError) as exc:
        raise InvalidInputError(f"{file}: unreadable {field} ({exc})") from exc


def metadata_number(value: object, file: str, field: str) -> float:
    """A number a metadata field holds (as a number or as text), which must be finite.

    Raises
    ------
    InvalidInputError
        Naming the file and the field, if the value is not a number, or NaN or infinite (JSON,
        and so OME-Zarr metadata, has no such numbers).
    """
    try:
        number = float(value)  # type: ignore[arg-type]  # whatever the file holds is tried
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{file}: {field} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{file}: {field} is {value!r}, not a finite number")
    return number


# Header fields stored in float32 (MRC's cell and origin, many HDF5 attributes) widen to
# float64 with binary noise: 0.834 is stored as 0.83400001525878906. The value the file meant
# is the shortest decimal that rounds to the same float32, which is what these give back, so
# metadata, reprs and `cellvol info` show 0.834. Values a user gives in float64 never pass
# through here.


def float32_meant(value: float) -> float:
    """The shortest decimal that rounds to the same float32 as ``value``, as a float.

    Examples
    --------
    >>> float32_meant(0.83400001525878906)
    0.834
    """
    return float(str(np.float32(value)))


def rational_meant(numerator: int, denominator: int) -> float:
    """``denominator / numerator`` as the shortest decimal the rational could have come from.

    TIFF resolution tags are rationals of pixels per unit; writers round (tifffile) or
    truncate (ImageJ) the numerator, so any size whose reciprocal lies within one unit of it
    is what the writer meant, and the shortest decimal among them is chosen. Small numerators
    (under 1000, such as 72 dpi) are whole resolutions, not rounded reciprocals: kept exact.
    """
    exact = denominator / numerator
    if numerator < 1000:
        return exact
    return _shortest_between(denominator / (numerator + 1), denominator / (numerator - 1), exact)


def _shortest_between(low: float, high: float, near: float) -> float:
    """The decimal in ``[low, high]`` with fewest significant digits, closest to ``near``."""
    if not (0 < low <= near <= high and math.isfinite(high)):
        return near
    top = math.floor(math.log10(high))
    for digits in range(1, 18):
        step = Decimal(1).scaleb(top - digits + 1)
        # The closest such decimal to `near`, else the first one above `low`.
        for start, rounding in ((near, ROUND_HALF_EVEN), (low, ROUND_CEILING)):
            candidate = float(Decimal(repr(start)).quantize(step, rounding=rounding))
            if low <= candidate <= high:
                return candidate
    return near
