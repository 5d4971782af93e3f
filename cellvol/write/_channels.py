"""The axes of an image with channels or time points, and the display of each channel.

A cellvol image is ``(z, y, x)``, ``(c, z, y, x)`` or ``(t, c, z, y, x)``: the axes before
``z`` are never downsampled, and each chunk and shard holds a single channel of a single time
point (see :func:`cellvol.write._plan.with_leading_axes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol._codec._cache import ChunkCache
from cellvol._codec._layout import chunk_layout
from cellvol._codec._reader import ChunkReader
from cellvol.errors import InvalidInputError
from cellvol.ome._display import (
    DEFAULT_CHANNEL_COLORS,
    ChannelDisplay,
    channel_color,
    contrast_window,
)
from cellvol.units import SPATIAL_AXES

__all__ = ["AXES_BY_NDIM", "ImageAxes", "channel_displays", "image_axes"]

#: The axes cellvol writes, by number of dimensions.
AXES_BY_NDIM: dict[int, tuple[str, ...]] = {
    3: SPATIAL_AXES,
    4: ("c", *SPATIAL_AXES),
    5: ("t", "c", *SPATIAL_AXES),
}


@dataclass(frozen=True, slots=True)
class ImageAxes:
    """An image's axis names and, when it names them, its channels' names and colours.

    Attributes
    ----------
    names
        ``("z", "y", "x")``, ``("c", "z", "y", "x")`` or ``("t", "c", "z", "y", "x")``.
    lead
        Sizes of the axes before ``z`` (empty for a 3-D image).
    channel_names, channel_colors
        One per channel (``RRGGBB``); None for a 3-D image given neither.
    """

    names: tuple[str, ...]
    lead: tuple[int, ...]
    channel_names: tuple[str, ...] | None
    channel_colors: tuple[str, ...] | None

    @property
    def n_channels(self) -> int:
        """Channels of the image (1 for a 3-D image)."""
        return self.lead[self.names.index("c")] if "c" in self.names else 1

    def parameters(self) -> dict[str, Any]:
        """What a resumed write must repeat; empty for a plain 3-D image (as before channels)."""
        recorded: dict[str, Any] = {}
        if self.names != SPATIAL_AXES:
            recorded["axes"] = "".join(self.names)
        if self.channel_names is not None:
            recorded["channel_names"] = list(self.channel_names)
        if self.channel_colors is not None:
            recorded["channel_colors"] = list(self.channel_colors)
        return recorded


def image_axes(
    shape: Sequence[int],
    axes: str | Sequence[str] | None,
    channel_names: Sequence[str] | None,
    channel_colors: Sequence[str] | None,
) -> ImageAxes:
    """Check a source's shape against its axes and channel names; fill in what is left out.

    Raises
    ------
    InvalidInputError
        For axes other than ``zyx``, ``czyx``, ``tczyx`` or not matching the shape's
        dimensions, or channel names or colours whose count is not the number of channels,
        repeated or empty names, or colours that are not ``RRGGBB``.
    """
    known = ", ".join("".join(a) for a in AXES_BY_NDIM.values())
    if axes is None:
        names = AXES_BY_NDIM.get(len(shape))
        if names is None:
            raise InvalidInputError(
                f"source must be 3-D (z, y, x), 4-D (c, z, y, x) or 5-D (t, c, z, y, x); "
                f"got shape {tuple(shape)} ({len(shape)}-D)"
            )
    else:
        names = tuple(axes.lower()) if isinstance(axes, str) else tuple(str(a) for a in axes)
        if names not in AXES_BY_NDIM.values():
            raise InvalidInputError(f"unknown axes {axes!r}; expected one of {known}")
        if len(names) != len(shape):
            raise InvalidInputError(
                f"axes {''.join(names)!r} need a {len(names)}-D source; got shape "
                f"{tuple(shape)} ({len(shape)}-D)"
            )
    lead = tuple(int(n) for n in shape[: len(names) - 3])
    count = lead[names.index("c")] if "c" in names else 1
    labels = None
    if channel_names is not None:
        labels = tuple(str(n) for n in channel_names)
        if len(labels) != count:
            raise InvalidInputError(
                f"{len(labels)} channel names {list(labels)} for {count} channel(s) "
                f"(source shape {tuple(shape)}, axes {''.join(names)!r})"
            )
        if any(not n.strip() for n in labels) or len(set(labels)) != len(labels):
            raise InvalidInputError(f"channel names must be distinct and non-empty: {labels}")
    elif names != SPATIAL_AXES:
        labels = tuple(f"c{i}" for i in range(count))
    colors = None
    if channel_colors is not None:
        colors = tuple(channel_color(c) for c in channel_colors)
        if len(colors) != count:
            raise InvalidInputError(
                f"{len(colors)} channel colours for {count} channel(s) "
                f"(source shape {tuple(shape)}, axes {''.join(names)!r})"
            )
    elif names != SPATIAL_AXES:
        palette = DEFAULT_CHANNEL_COLORS if count > 1 else ("FFFFFF",)
        colors = tuple(palette[i % len(palette)] for i in range(count))
    return ImageAxes(names, lead, labels, colors)


def channel_displays(array: Any, url: str, axes: ImageAxes, title: str) -> list[ChannelDisplay]:
    """Each channel's label, colour and contrast window, read back from level 0.

    A channel's window is estimated over all its time points.
    """
    layout = chunk_layout(array)
    if layout is None:  # pragma: no cover - cellvol writes layouts the reader knows
        read_box = array.__getitem__
    else:
        reader = ChunkReader(array.store_path, layout, ChunkCache(0), url, array.path)

        def read_box(box: tuple[slice, ...]) -> Any:
            return reader.read([(s.start, s.stop) for s in box])

    dtype = np.dtype(array.dtype)
    shape, chunks = tuple(array.shape), tuple(array.chunks)
    if "c" not in axes.names:
        window = contrast_window(read_box, shape, chunks, dtype)
        label = axes.channel_names[0] if axes.channel_names else title
        color = axes.channel_colors[0] if axes.channel_colors else "FFFFFF"
        return [ChannelDisplay(label, window, color)]
    at = axes.names.index("c")
    rest = [i for i in range(len(shape)) if i != at]
    labels, colors = axes.channel_names or (), axes.channel_colors or ()
    displays = []
    for number in range(axes.n_channels):

        def read(box: tuple[slice, ...], c: int = number) -> npt.NDArray[Any]:
            full = (*box[:at], slice(c, c + 1), *box[at:])
            block: npt.NDArray[Any] = np.take(np.asarray(read_box(full)), 0, axis=at)
            return block

        window = contrast_window(read, [shape[i] for i in rest], [chunks[i] for i in rest], dtype)
        displays.append(ChannelDisplay(labels[number], window, colors[number]))
    return displays
