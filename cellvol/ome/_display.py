"""Display metadata: a contrast window viewers can trust, written as OME-Zarr ``omero``.

EM data rarely fills its type's range: a uint16 tomogram may use a few hundred grey levels, and
a viewer that stretches 0-65535 shows a grey field. At the end of every image write, cellvol
estimates the 0.1 and 99.9 percentiles of level 0 and writes them as the channel's
``window.start`` / ``window.end``; ``window.min`` / ``window.max`` give the range a contrast
slider should span (the type's range for integers up to 16 bits, the observed range otherwise).

The estimate comes from a stratified sample of level 0: whole chunks spread evenly through the
volume, up to a byte budget (16 MiB by default, about 0.06 s of a 1 GiB write; 64 MiB cost
0.25 s there), read back after the data is written. Reading back rather than counting as the
data streams through the writer keeps the estimate the same whether the write ran in one go,
was resumed (which skips finished shards) or ran on a cluster. For integers up to 16 bits the
sample's exact histogram is used; for wider types and floats, the sample's percentiles.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError, MetadataError
from cellvol.ome._metadata import ome_namespace

__all__ = [
    "DEFAULT_CHANNEL_COLORS",
    "ChannelDisplay",
    "Window",
    "channel_color",
    "channels_of",
    "contrast_window",
    "label_color",
    "omero_metadata",
    "stored_channels",
    "window_of",
]

DEFAULT_SAMPLE_BYTES = 16 * 2**20
LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9


@dataclass(frozen=True, slots=True)
class Window:
    """A contrast window: display ``start``-``end`` within a slider range ``min``-``max``."""

    start: float
    end: float
    min: float
    max: float

    def to_json(self) -> dict[str, float]:
        """The OME-Zarr ``window`` object."""
        return {"start": self.start, "end": self.end, "min": self.min, "max": self.max}


def contrast_window(
    read: Callable[[tuple[slice, ...]], npt.NDArray[Any]],
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: np.dtype[Any],
    *,
    sample_bytes: int = DEFAULT_SAMPLE_BYTES,
    low: float = LOW_PERCENTILE,
    high: float = HIGH_PERCENTILE,
) -> Window:
    """Estimate a robust contrast window of a volume from an even sample of its chunks.

    Parameters
    ----------
    read
        Returns the voxels of a box of slices (``Level.__getitem__``).
    shape, chunks, dtype
        The volume's shape, chunk shape (the sample's unit) and element type.
    sample_bytes
        How much to read at most; the whole volume when it is smaller.
    low, high
        The percentiles that become the window's start and end.
    """
    dtype = np.dtype(dtype)
    grid = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
    total = int(np.prod(grid))
    chunk_bytes = int(np.prod(chunks)) * dtype.itemsize
    count = max(1, min(total, sample_bytes // max(1, chunk_bytes)))
    # Evenly spaced positions in the chunk grid's raster order (deterministic, stratified).
    picks = np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))
    boxes = [
        tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(np.unravel_index(int(p), grid), chunks, shape, strict=True)
        )
        for p in picks
    ]
    exact = dtype.kind in "iu" and dtype.itemsize <= 2
    if exact:
        info = np.iinfo(dtype)
        histogram = np.zeros(int(info.max) - int(info.min) + 1, np.int64)
        for box in boxes:
            values = np.asarray(read(box)).reshape(-1)
            if info.min:  # signed: shift to non-negative bins (unsigned counts as it is)
                values = values.astype(np.int64) - int(info.min)
            histogram += np.bincount(values, minlength=histogram.size)
        start, end = _histogram_percentiles(histogram, (low, high))
        return _widened(start + int(info.min), end + int(info.min), info.min, info.max)
    sample = np.concatenate([np.asarray(read(box)).reshape(-1) for box in boxes])
    finite = sample[np.isfinite(sample)] if dtype.kind == "f" else sample
    if not finite.size:
        return Window(0.0, 1.0, 0.0, 1.0)
    start, end = np.percentile(finite, [low, high])
    return _widened(float(start), float(end), float(finite.min()), float(finite.max()))


def _widened(start: float, end: float, low: float, high: float) -> Window:
    """A window at least one grey level wide (a constant image would otherwise divide by 0)."""
    if end <= start:
        end = start + 1
        high = max(high, end)
    return Window(float(start), float(end), float(low), float(high))


def _histogram_percentiles(
    histogram: npt.NDArray[np.int64], percents: Sequence[float]
) -> list[int]:
    """The bins at which the cumulative count first reaches each percentile."""
    cumulative = np.cumsum(histogram)
    if not cumulative[-1]:
        return [0 for _ in percents]
    targets = [p / 100 * cumulative[-1] for p in percents]
    return [int(np.searchsorted(cumulative, max(t, 1), side="left")) for t in targets]


#: Colours given to the channels of a multi-channel image that names none, in order.
DEFAULT_CHANNEL_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")

_HEX_COLOR = re.compile(r"[0-9A-Fa-f]{6}")


@dataclass(frozen=True, slots=True)
class ChannelDisplay:
    """How a viewer shows one channel: its label, contrast window and ``RRGGBB`` colour."""

    label: str
    window: Window
    color: str = "FFFFFF"


def channel_color(value: str, where: str = "channel colour") -> str:
    """A colour as OME ``omero`` stores it, ``RRGGBB`` in capitals (``#`` accepted).

    Raises
    ------
    InvalidInputError
        For anything but six hexadecimal digits.
    """
    text = str(value).strip().removeprefix("#")
    if not _HEX_COLOR.fullmatch(text):
        raise InvalidInputError(f"{where} {value!r} is not a colour; expected RRGGBB, e.g. 00FF00")
    return text.upper()


def omero_metadata(channels: Sequence[ChannelDisplay], depth: int) -> dict[str, Any]:
    """The ``omero`` block of an image with these channels and ``depth`` z planes.

    One channel is shown greyscale, several in colour (each in its own, blended additively).

    Raises
    ------
    MetadataError
        If ome-zarr-models rejects it (a bug in cellvol, reported loudly).
    """
    from ome_zarr_models.common.omero import Omero
    from pydantic import ValidationError

    block = {
        "channels": [
            {
                "active": True,
                "coefficient": 1.0,
                "color": channel.color,
                "family": "linear",
                "inverted": False,
                "label": channel.label,
                "window": channel.window.to_json(),
            }
            for channel in channels
        ],
        "rdefs": {
            "defaultT": 0,
            "defaultZ": int(depth) // 2,
            "model": "greyscale" if len(channels) == 1 else "color",
        },
    }
    try:
        Omero.model_validate(block)
    except ValidationError as exc:
        raise MetadataError(f"cellvol built an invalid omero block: {exc}") from exc
    return block


def window_of(attributes: dict[str, Any]) -> Window | None:
    """The first channel's stored window, if the metadata has a complete one."""
    first = stored_channels(attributes)[:1]
    return first[0].window if first and first[0] is not None else None


def channels_of(attributes: Mapping[str, Any]) -> list[ChannelDisplay]:
    """Every channel of the stored ``omero`` block: its label, window and colour.

    Empty when the block is absent or a channel's window is incomplete (not cellvol's, and
    not to be trusted for display). A channel without a label is named by its index.
    """
    found = stored_channels(attributes)
    return [] if None in found else [d for d in found if d is not None]


def stored_channels(attributes: Mapping[str, Any]) -> list[ChannelDisplay | None]:
    """Each channel of the stored ``omero`` block, read on its own: ``None`` where unusable.

    One entry per stored channel, so that one bad channel does not discard the others'
    windows. The colour is the stored string, unchecked (see :func:`channel_color`).
    """
    omero = ome_namespace(attributes).get("omero")
    stored = omero.get("channels") if isinstance(omero, Mapping) else None
    if not isinstance(stored, list):
        return []
    return [_stored_channel(number, entry) for number, entry in enumerate(stored)]


def _stored_channel(number: int, stored: Any) -> ChannelDisplay | None:
    try:
        window = Window(*(float(stored["window"][k]) for k in ("start", "end", "min", "max")))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    label = stored.get("label")
    color = stored.get("color")
    return ChannelDisplay(
        label if isinstance(label, str) else str(number),
        window,
        color if isinstance(color, str) else "FFFFFF",
    )


def label_color(label: int) -> tuple[int, int, int, int]:
    """A stable, distinct, opaque colour for a label ID (the golden-ratio hue sequence)."""
    hue = (int(label) * 0.6180339887498949) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return (round(red * 255), round(green * 255), round(blue * 255), 255)
