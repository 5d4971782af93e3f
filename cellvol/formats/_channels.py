"""Inputs with channels: arrays reordered into the image's axes, and one file per channel.

cellvol images are ``(z, y, x)``, ``(c, z, y, x)`` or ``(t, c, z, y, x)``. An input stored in
another order (an HDF5 dataset ``(z, c, y, x)``, an ImageJ hyperstack's ``z, c``) is read
through a :class:`SeriesView` that reorders each region read. A volume per channel (a TIFF
stack per channel, one file each) becomes one image through :class:`ChannelStack`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError
from cellvol.formats._source import Source
from cellvol.units import SPATIAL_AXES
from cellvol.write._inputs import read_source, region_of

__all__ = [
    "ChannelStack",
    "SeriesView",
    "from_series",
    "reorder_axes",
    "stack_channels",
    "stored_axes",
]

_LETTERS = "tczyx"


@dataclass(frozen=True)
class SeriesView:
    """A stored array seen with the image's axes: reordered, its length-one axes dropped.

    Attributes
    ----------
    base
        The array as stored, with region reads (a :class:`MemmapSource`, an HDF5 dataset).
    shape
        The image's shape.
    view_axes
        Per axis of the stored array: the image axis it is, or None for a length-one axis.
    """

    base: Any
    shape: tuple[int, ...]
    view_axes: tuple[int | None, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        dtype: np.dtype[Any] = np.dtype(self.base.dtype)
        return dtype

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        return from_series(self.base.__getitem__, region_of(key, self.shape), self.view_axes)


def from_series(
    read: Callable[[tuple[slice, ...]], Any],
    region: tuple[slice, ...],
    view_axes: tuple[int | None, ...],
) -> npt.NDArray[Any]:
    """Read an image region from a stored array whose axes map to the image's by ``view_axes``."""
    inner = tuple(slice(0, 1) if a is None else region[a] for a in view_axes)
    data = np.asarray(read(inner))[tuple(0 if a is None else slice(None) for a in view_axes)]
    present = [a for a in view_axes if a is not None]
    # Into the image's axis order; the image's own length-one axes come back by the reshape.
    data = np.transpose(data, np.argsort(present))
    return np.ascontiguousarray(data).reshape(tuple(r.stop - r.start for r in region))


def stored_axes(axes: str, name: str) -> str:
    """``axes`` in lower case, checked: z, y, x and optionally t and c, each once.

    Raises
    ------
    InvalidInputError
        Naming ``name`` and the axes, otherwise.
    """
    letters = axes.strip().lower()
    if (
        not set(letters) <= set(_LETTERS)
        or len(set(letters)) != len(letters)
        or not set(SPATIAL_AXES) <= set(letters)
    ):
        raise InvalidInputError(
            f"{name}: unknown axes {axes!r}; expected z, y, x and optionally t and c, each "
            "once, in the stored order (e.g. zcyx)"
        )
    return letters


def reorder_axes(array: Any, axes: str, name: str) -> tuple[Any, tuple[str, ...]]:
    """``array`` (stored with ``axes``, e.g. ``"zcyx"``) seen in the image's axis order.

    Returns the array to read (itself when already in order) and the image's axes: ``z, y,
    x`` preceded by ``c``, or by ``t, c`` when it has time points (``c`` of length one when
    it has no channel axis).

    Raises
    ------
    InvalidInputError
        For letters other than t, c, z, y, x, repeated ones, no z, y and x, or a count that is
        not the array's number of dimensions.
    """
    letters = stored_axes(axes, name)
    shape = tuple(int(n) for n in array.shape)
    if len(letters) != len(shape):
        raise InvalidInputError(
            f"{name}: axes {axes!r} name {len(letters)} axes; the array has shape {shape}"
        )
    names = ("t", "c", *SPATIAL_AXES) if "t" in letters else tuple(_LETTERS[1:])
    if "c" not in letters and "t" not in letters:
        names = SPATIAL_AXES
    view_axes = tuple(names.index(letter) for letter in letters)
    if view_axes == tuple(range(len(names))):
        return array, names
    out_shape = tuple(shape[letters.index(n)] if n in letters else 1 for n in names)
    return SeriesView(array, out_shape, view_axes), names


@dataclass(frozen=True)
class ChannelStack:
    """Volumes of equal shape and type, one per channel, as one ``(c, z, y, x)`` array."""

    channels: tuple[Any, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(channels, z, y, x)``."""
        return (len(self.channels), *(int(n) for n in self.channels[0].shape))

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        dtype: np.dtype[Any] = np.dtype(self.channels[0].dtype)
        return dtype

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        region = region_of(key, self.shape)
        out = np.empty(tuple(r.stop - r.start for r in region), self.dtype)
        for i, c in enumerate(range(region[0].start, region[0].stop)):
            out[i] = read_source(self.channels[c], region[1:])
        return out


def stack_channels(
    paths: Mapping[str, str | os.PathLike[str]], open_one: Callable[[str], Source]
) -> Source:
    """One image from a volume per channel (``{name: input}``), each opened by ``open_one``.

    Raises
    ------
    InvalidInputError
        If fewer than one input is given, an input has channels itself, or the inputs differ
        in shape, element type or recorded voxel size (naming the first that differs).
    """
    if not paths:
        raise InvalidInputError("no channels given: expected {name: input, ...}")
    opened = {str(name): open_one(os.fspath(path)) for name, path in paths.items()}
    first_name, first = next(iter(opened.items()))
    for channel, source in opened.items():
        shape, dtype = tuple(source.array.shape), np.dtype(source.array.dtype)
        if source.axes != SPATIAL_AXES:
            raise InvalidInputError(
                f"channel {channel!r} ({source.description}) has axes {source.axes}; each "
                "channel's input must be one (z, y, x) volume"
            )
        expected = (tuple(first.array.shape), np.dtype(first.array.dtype), first.voxel_size)
        if (shape, dtype, source.voxel_size) != expected:
            raise InvalidInputError(
                f"channel {channel!r} is {shape} {dtype} at {source.voxel_size}, but channel "
                f"{first_name!r} is {expected[0]} {expected[1]} at {expected[2]}; every "
                "channel must match"
            )
    listing = "; ".join(f"{n}: {s.description}" for n, s in opened.items())
    return Source(
        array=ChannelStack(tuple(s.array for s in opened.values())),
        voxel_size=first.voxel_size,
        description=f"{len(opened)} channels ({listing})",
        files=tuple(f for s in opened.values() for f in s.files),
        origin=first.origin,
        image_stack=first.image_stack,
        details={"channels": {n: s.details for n, s in opened.items()}},
        block_bytes=max(s.block_bytes for s in opened.values()),
        axes=("c", *SPATIAL_AXES),
        channel_names=tuple(opened),
    )
