"""Turn a plane of voxels (and optionally of labels) into PNG, JPEG or WebP bytes.

Intensities map linearly from a contrast window to 0-255, then through a colour map; labels
are drawn on top in their colours with a given opacity, background (0) left clear.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError
from cellvol.ome._display import label_color

__all__ = ["FORMATS", "encode", "label_overlay", "render"]

FORMATS: Final = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
MEDIA_TYPES: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_BUILT_IN = ("gray", "gray_r")


def render(
    plane: npt.NDArray[Any], window: tuple[float, float], colormap: str = "gray"
) -> npt.NDArray[np.uint8]:
    """An ``(h, w, 3)`` RGB image of ``plane`` with ``window`` mapped to the colour map's ends."""
    low, high = window
    scaled = (plane.astype(np.float32) - np.float32(low)) * np.float32(
        255.0 / max(high - low, 1e-12)
    )
    grey = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
    table: npt.NDArray[np.uint8] = _lookup_table(colormap)
    return np.asarray(table[grey], dtype=np.uint8)


def label_overlay(
    image: npt.NDArray[np.uint8],
    labels: npt.NDArray[Any],
    colors: Mapping[int, Sequence[int]],
    alpha: float,
) -> npt.NDArray[np.uint8]:
    """Blend label colours over an RGB image; IDs without a stored colour get cellvol's."""
    ids, inverse = np.unique(labels, return_inverse=True)
    table = np.array(
        [colors.get(int(i)) or label_color(int(i)) for i in ids], dtype=np.float32
    ).reshape(-1, 4)
    table[ids == 0, 3] = 0  # background stays clear
    rgba = table[inverse.reshape(labels.shape)]
    weight = rgba[..., 3:4] / 255.0 * alpha
    blended = image.astype(np.float32) * (1 - weight) + rgba[..., :3] * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def encode(image: npt.NDArray[np.uint8], fmt: str, quality: int = 85) -> tuple[bytes, str]:
    """Encode an RGB image; returns the bytes and their media type."""
    from PIL import Image

    kind = FORMATS.get(fmt.lower())
    if kind is None:
        raise InvalidInputError(f"image format {fmt!r} is not one of {sorted(set(FORMATS))}")
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": quality} if kind in ("JPEG", "WEBP") else {}
    if kind == "PNG":
        options["compress_level"] = 1  # fast: tiles are made on request
    Image.fromarray(image, mode="RGB").save(buffer, format=kind, **options)
    return buffer.getvalue(), MEDIA_TYPES[kind]


def colormaps() -> list[str]:
    """Colour map names accepted by :func:`render`."""
    try:
        import matplotlib

        return sorted({*_BUILT_IN, *matplotlib.colormaps})
    except ImportError:
        return list(_BUILT_IN)


@cache
def _lookup_table(name: str) -> npt.NDArray[np.uint8]:
    ramp = np.arange(256, dtype=np.uint8)
    if name == "gray":
        return np.stack([ramp] * 3, axis=1)
    if name == "gray_r":
        return np.stack([255 - ramp] * 3, axis=1)
    try:
        import matplotlib
    except ImportError:
        raise InvalidInputError(
            f"colour map {name!r} needs matplotlib (pip install 'cellvol[server]'); "
            f"built in: {', '.join(_BUILT_IN)}"
        ) from None
    if name not in matplotlib.colormaps:
        raise InvalidInputError(f"unknown colour map {name!r}; try gray, gray_r, viridis, magma")
    rgba = matplotlib.colormaps[name](np.linspace(0, 1, 256))
    return np.asarray(np.round(rgba[:, :3] * 255), dtype=np.uint8)
