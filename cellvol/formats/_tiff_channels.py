"""The channels of a TIFF file: which axes of a series make the image, and channel metadata.

A TIFF series may hold channels (``C``) and time points (``T``) beside ``z, y, x``: OME-TIFF
and ImageJ hyperstacks do. They become the image's ``c`` and ``t`` axes. OME-TIFF names its
channels and may colour them (``Channel/@Name``, ``@Color`` as a signed RGBA integer); ImageJ
colours them with a lookup table per channel, whose brightest entry is the channel's colour.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import Any

import numpy as np

from cellvol.errors import InvalidInputError
from cellvol.formats._source import metadata_field

__all__ = ["image_axes_of", "tiff_channels"]

_SPATIAL_LETTERS = frozenset("ZYXIQ")  # tifffile's names for z (or page index), y and x


def image_axes_of(
    axes: str, shape: Sequence[int], name: str
) -> tuple[tuple[int | None, ...], tuple[str, ...]]:
    """Where each axis of the image comes from in the series, and the image's axis names.

    Returns ``(order, names)``: ``names`` is ``z, y, x`` preceded by ``c`` or ``t, c`` when the
    series has channels or time points; ``order[i]`` is the series axis of image axis ``i``,
    or None for an axis of length one that the series lacks (``z`` of a single image, ``c``
    of a time series with one channel).

    Raises
    ------
    InvalidInputError
        For colour (multi-sample) pixels, other axes longer than one, or more than three
        spatial axes.
    """
    extra = [
        (letter, int(n))
        for letter, n in zip(axes, shape, strict=True)
        if letter not in _SPATIAL_LETTERS and letter not in "CT" and n > 1
    ]
    if extra:
        listing = ", ".join(f"{letter}={n}" for letter, n in extra)
        what = "colour or multi-sample pixels" if any(a == "S" for a, _ in extra) else "axes"
        raise InvalidInputError(
            f"{name}: has {what} beyond t, c, z, y, x ({listing}; axes {axes}, shape "
            f"{tuple(shape)}); cellvol converts channels (C) and time points (T) of "
            "single-sample images: split the others first"
        )
    kept = [i for i, letter in enumerate(axes) if letter in _SPATIAL_LETTERS]
    non_trivial = [i for i in kept if shape[i] > 1]
    if len(non_trivial) > 3:
        raise InvalidInputError(
            f"{name}: {len(non_trivial)} image axes (axes {axes}, shape {tuple(shape)}); "
            "expected at most z, y, x"
        )
    # Keep y and x always; of the rest, only axes longer than one.
    spatial: list[int | None] = [i for i in kept[:-2] if shape[i] > 1]
    spatial += kept[-2:]
    if len(spatial) == 2:
        spatial.insert(0, None)
    channel = _long_axis(axes, shape, "C")
    time = _long_axis(axes, shape, "T")
    if time is not None:
        return (time, channel, *spatial), ("t", "c", "z", "y", "x")
    if channel is not None:
        return (channel, *spatial), ("c", "z", "y", "x")
    return tuple(spatial), ("z", "y", "x")


def _long_axis(axes: str, shape: Sequence[int], letter: str) -> int | None:
    at = axes.find(letter)
    return at if at >= 0 and shape[at] > 1 else None


def tiff_channels(
    tif: Any, count: int, name: str
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The names and ``RRGGBB`` colours of a file's ``count`` channels, where it records them.

    Each is None unless the file gives one per channel.
    """
    if tif.is_ome and tif.ome_metadata:
        with metadata_field(name, "OME-XML channels"):
            return _ome_channels(str(tif.ome_metadata), count)
    if tif.is_imagej and tif.imagej_metadata:
        with metadata_field(name, "ImageJ lookup tables"):
            return None, _imagej_colors(tif.imagej_metadata, count)
    return None, None


def _ome_channels(xml: str, count: int) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    root = ElementTree.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    channels = [e for e in pixels if e.tag.rsplit("}", 1)[-1] == "Channel"]
    if len(channels) != count:
        return None, None
    names = tuple(str(c.get("Name", "")).strip() for c in channels)
    colors = [c.get("Color") for c in channels]
    named = names if all(names) and len(set(names)) == count else None
    if any(c is None for c in colors):
        return named, None
    # OME stores RGBA as one signed 32-bit integer.
    rgba = [int(str(c)) & 0xFFFFFFFF for c in colors]
    return named, tuple(f"{value >> 8:06X}" for value in rgba)


def _imagej_colors(metadata: dict[str, Any], count: int) -> tuple[str, ...] | None:
    tables = metadata.get("LUTs")
    if not isinstance(tables, list) or len(tables) != count:
        return None
    colors = []
    for table in tables:
        lut = np.asarray(table)
        if lut.ndim != 2 or lut.shape[0] != 3:
            return None
        red, green, blue = (int(v) for v in lut[:, -1])
        colors.append(f"{red:02X}{green:02X}{blue:02X}")
    return tuple(colors)
