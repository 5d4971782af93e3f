"""Other views of a level: dask arrays, xarray DataArrays with physical coordinates, HTML.

dask and xarray are imported only when asked for, so ``import cellvol`` stays light.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cellvol.read._level import Level
    from cellvol.read._volume import Volume

__all__ = ["level_html", "level_to_dask", "level_to_xarray", "thumbnail_level", "volume_html"]


def level_to_dask(level: Level) -> Any:
    """A dask array of the level, one block per shard (per chunk when unsharded).

    Blocks are read through :meth:`Level.__getitem__`, so the manifest and checksum checks
    apply to them too.
    """
    import dask.array as da

    blocks = level.shards or level.chunks
    return da.from_array(  # type: ignore[no-untyped-call]
        level,
        chunks=blocks,
        # A channel's view is named apart from the others: dask takes equal names for equal data.
        name=f"cellvol-{level.array.store_path}-{level.path}"
        + "".join(f"-{i}" for i in level.fixed),
        asarray=True,
        fancy=False,
    )


def level_to_xarray(level: Level, name: str | None = None) -> Any:
    """An ``xarray.DataArray`` of the level (dask-backed) with coordinates in physical units.

    Each axis's coordinate holds the voxel centres, ``translation + i * scale``, with the
    axis's unit in its ``units`` attribute, so ``da.sel(z=120.0, method="nearest")`` works
    in nanometres.
    """
    import xarray as xr

    dims = tuple(axis.name for axis in level.axes)
    coords = {}
    for axis, n, scale, offset in zip(
        level.axes, level.shape, level.scale, level.translation, strict=True
    ):
        values = offset + scale * np.arange(n, dtype=np.float64)
        attrs = {"units": axis.unit} if axis.unit else {}
        coords[axis.name] = xr.Variable(axis.name, values, attrs=attrs)
    return xr.DataArray(
        level_to_dask(level),
        dims=dims,
        coords=coords,
        name=name,
        attrs={"level": level.index, "scale": list(level.scale)},
    )


# The thumbnail's planes are drawn this tall (or this wide, when flat), whatever the level.
THUMBNAIL_PIXELS = 192
# The level a thumbnail reads from: the finest whose planes are at most this many voxels on a
# side, so that a terabyte volume's thumbnail reads a few small planes, not full-size ones.
THUMBNAIL_SOURCE_VOXELS = 512


def volume_html(volume: Volume) -> str:
    """A Jupyter representation: the levels table and three middle planes in true proportions."""
    unit = volume.unit or "unitless"
    shown = thumbnail_level(volume.levels)
    picture = _picture(shown)
    caption = f"<br/><small>middle planes of level {shown.index}</small>" if picture else ""
    return (
        f"<div><strong>cellvol.Volume</strong> {html.escape(volume.url)}<br/>"
        f"{volume.dtype}, axes {','.join(volume.axes)}, OME-Zarr {volume.ome_version or '-'}"
        f"{_levels_table(volume.levels, unit)}{picture}{caption}</div>"
    )


def level_html(level: Level) -> str:
    """A Jupyter representation of one level: its row of the levels table and its planes."""
    unit = next((axis.unit for axis in level.axes if axis.unit), None) or "unitless"
    return (
        f"<div><strong>cellvol.Level</strong> {level.index} ({html.escape(level.path)}), "
        f"{level.dtype}{_levels_table([level], unit)}{_picture(level)}</div>"
    )


def thumbnail_level(levels: Sequence[Level]) -> Level:
    """The level a thumbnail is drawn from.

    The finest level whose every axis is at most ``THUMBNAIL_SOURCE_VOXELS`` voxels, else the
    coarsest: planes big enough to see, small enough to read at once.
    """
    for level in levels:
        if max(level.shape) <= THUMBNAIL_SOURCE_VOXELS:
            return level
    return levels[-1]


def _levels_table(levels: Sequence[Level], unit: str) -> str:
    rows = []
    for level in levels:
        spacing = level.spacing  # z, y, x; or y, x for a 2-D image
        rows.append(
            "<tr>"
            f"<td>{level.index}</td><td>{' × '.join(map(str, level.shape))}</td>"
            f"<td>{' × '.join(map(str, level.chunks))}</td>"
            f"<td>{' × '.join(map(str, level.shards)) if level.shards else '-'}</td>"
            f"<td>{' × '.join(f'{v:g}' for v in spacing) if spacing else '-'}</td>"
            f"<td>{level.nbytes / 2**20:,.1f} MiB</td>"
            "</tr>"
        )
    return (
        "<table><tr><th>level</th><th>shape</th><th>chunks</th><th>shards</th>"
        f"<th>voxel ({html.escape(unit)})</th><th>size</th></tr>{''.join(rows)}</table>"
    )


def _picture(level: Level) -> str:
    thumbnail = _thumbnail(level)
    return f'<img src="data:image/png;base64,{thumbnail}"/>' if thumbnail else ""


def _thumbnail(level: Level) -> str | None:
    """The level's three middle planes side by side in physical proportions, as base64 PNG.

    Each plane is resampled so that a pixel covers the same physical length along both of its
    axes, then scaled to ``THUMBNAIL_PIXELS`` on its longer side. None if the level is not 3-D.
    """
    from PIL import Image

    if level.ndim != 3:
        return None
    z, y, x = (n // 2 for n in level.shape)
    sz, sy, sx = (abs(s) or 1.0 for s in level.scale)
    # (plane, physical height, physical width)
    planes = [
        (level[z], level.shape[1] * sy, level.shape[2] * sx),
        (level[:, y], level.shape[0] * sz, level.shape[2] * sx),
        (level[:, :, x], level.shape[0] * sz, level.shape[1] * sy),
    ]
    per_unit = THUMBNAIL_PIXELS / max(max(h, w) for _, h, w in planes)
    images = [
        Image.fromarray(_to_bytes(plane)).resize(
            (max(1, round(w * per_unit)), max(1, round(h * per_unit))), Image.Resampling.BILINEAR
        )
        for plane, h, w in planes
    ]
    gap = 8
    canvas = Image.new("L", (sum(i.width for i in images) + gap * 2, max(i.height for i in images)))
    column = 0
    for image in images:
        canvas.paste(image, (column, 0))
        column += image.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_bytes(plane: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    values = plane.astype(np.float64)
    low, high = np.percentile(values, (0.5, 99.5))
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
