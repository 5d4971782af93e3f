"""Images with channels on the server: each channel in its own colour, blended additively.

An image with a channel axis is drawn from its channels' ``(z, y, x)`` views
(:meth:`cellvol.Volume.channel`). Each channel maps its own contrast window to 0-1, is tinted
by its colour and added to the others, as fluorescence viewers show several stains at once.
The windows and colours come from the image's display metadata (``omero``); a channel without
one gets the window estimated from the coarsest level and a colour from a fixed palette.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError
from cellvol.ome._display import (
    DEFAULT_CHANNEL_COLORS,
    ChannelDisplay,
    Window,
    channel_color,
    contrast_window,
    stored_channels,
)
from cellvol.read._volume import Volume

__all__ = ["Channel", "blend", "channels_of_image", "pick_channels", "to_rgb", "windows_of"]


@dataclass(frozen=True)
class Channel:
    """One channel being served: its name, its ``(z, y, x)`` view, window and colour."""

    name: str
    volume: Volume
    window: Window
    color: str  # RRGGBB

    def to_json(self) -> dict[str, Any]:
        """The channel as the catalog lists it."""
        return {"name": self.name, "window": self.window.to_json(), "color": self.color}


def channels_of_image(volume: Volume) -> list[Channel]:
    """The image's channels (time point 0), or none when it has no channel axis."""
    names = volume.channels
    if not names:
        return []
    stored = stored_channels(volume.attributes)
    if len(stored) != len(names):
        stored = [None] * len(names)
    found = []
    for index, (name, display) in enumerate(zip(names, stored, strict=True)):
        view = volume.channel(index)
        if display is not None:
            window = display.window
        else:
            coarsest = view.levels[-1]
            window = contrast_window(
                coarsest.__getitem__, coarsest.shape, coarsest.chunks, coarsest.dtype
            )
        found.append(Channel(name, view, window, _color(display, index, volume)))
    return found


def _color(display: ChannelDisplay | None, index: int, volume: Volume) -> str:
    """The stored colour of a channel, or the palette's when it names none or a bad one."""
    fallback = DEFAULT_CHANNEL_COLORS[index % len(DEFAULT_CHANNEL_COLORS)]
    if display is None:
        return fallback
    try:
        return channel_color(display.color)
    except InvalidInputError:
        # A third-party image still reads fine: shown in the palette's colour, not refused.
        warnings.warn(
            f"{volume.url}: channel {index} has colour {display.color!r}, not RRGGBB; "
            f"showing it in {fallback}",
            stacklevel=2,
        )
        return fallback


def pick_channels(channels: Sequence[Channel], text: str | None, where: str) -> list[Channel]:
    """The channels ``text`` names: comma-separated names or positions; none given, all.

    ``#N`` is always position ``N`` (what the page sends: a numeric label such as ``"488"``
    never shadows it). A bare part is a channel's name; a bare integer that names no channel
    is taken as a position too, for typing URLs by hand.

    ``none`` (unless a channel is so named) selects no channel: the page with every
    channel unchecked.

    Raises
    ------
    InvalidInputError
        For a name or index the image does not have, or a channel named twice (each
        chosen channel is read once per request: at most the image's channel count).
    """
    if text is None or text == "":
        return list(channels)
    names = [c.name for c in channels]
    if text == "none" and "none" not in names:
        return []
    chosen = []
    for part in text.split(","):
        position = part.removeprefix("#")
        if part.startswith("#") and _is_integer(position):
            if not -len(channels) <= int(position) < len(channels):
                raise InvalidInputError(
                    f"{where} has no channel at {part!r}; its positions are #0-#{len(names) - 1}"
                )
            chosen.append(channels[int(position)])
        elif part in names:
            chosen.append(channels[names.index(part)])
        elif _is_integer(part) and -len(channels) <= int(part) < len(channels):
            chosen.append(channels[int(part)])
        else:
            raise InvalidInputError(
                f"{where} has no channel {part!r}; its channels are {names} (or 0-{len(names) - 1})"
            )
        if any(c is chosen[-1] for c in chosen[:-1]):
            # Not merged silently: windows= and opacities= follow the chosen channels' order.
            raise InvalidInputError(f"{where}: channel {part!r} is chosen twice in {text!r}")
    return chosen


def _is_integer(text: str) -> bool:
    """Whether ``text`` is a plain ASCII integer (``"²"`` is a digit, yet ``int`` refuses it)."""
    return text.isascii() and text.removeprefix("-").isdigit()


def windows_of(text: str | None, channels: Sequence[Channel]) -> list[Window]:
    """Each channel's window: stored, or from ``text`` (``low,high;low,high;...``, in order).

    Raises
    ------
    InvalidInputError
        If ``text`` does not give one ``low,high`` with ``high > low`` per channel.
    """
    if text is None or text == "":
        return [c.window for c in channels]
    parts = text.split(";")
    if len(parts) != len(channels):
        raise InvalidInputError(
            f"windows {text!r} gives {len(parts)} window(s) for {len(channels)} channel(s); "
            "expected low,high;low,high;..."
        )
    windows = []
    for part, channel in zip(parts, channels, strict=True):
        try:
            low, high = (float(v) for v in part.split(","))
        except ValueError:
            raise InvalidInputError(f"window {part!r} is not low,high") from None
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise InvalidInputError(f"window {part!r} needs finite numbers with high > low")
        stored = channel.window
        windows.append(Window(low, high, min(low, stored.min), max(high, stored.max)))
    return windows


def blend(
    planes: Sequence[npt.NDArray[Any]],
    windows: Sequence[Window],
    colors: Sequence[str],
    gains: Sequence[float] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Channels summed in their colours: an ``(h, w, 3)`` RGB in 0-1 and each pixel's weight.

    ``gains`` (0-1, default 1) scale each channel's contribution: an overlay channel's
    opacity. The weight (0-1) is the brightest channel's level there.
    """
    shape = planes[0].shape
    rgb = np.zeros((*shape, 3), np.float32)
    weight = np.zeros(shape, np.float32)
    gains = [1.0] * len(planes) if gains is None else gains
    for plane, window, color, gain in zip(planes, windows, colors, gains, strict=True):
        span = max(window.end - window.start, 1e-12)
        level = np.clip((plane.astype(np.float32) - np.float32(window.start)) / span, 0, 1)
        level = np.nan_to_num(level, nan=0.0)
        tint = np.array([int(color[i : i + 2], 16) / 255 for i in (0, 2, 4)], np.float32)
        rgb += level[..., None] * (tint * np.float32(gain))
        np.maximum(weight, level * np.float32(gain), out=weight)
    return np.clip(rgb, 0, 1), weight


def to_rgb(rgb: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """A 0-1 RGB image as 8-bit."""
    return np.asarray(np.clip(rgb * 255 + 0.5, 0, 255), dtype=np.uint8)
