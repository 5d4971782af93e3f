"""Other views of a level: dask arrays, xarray DataArrays with physical coordinates, HTML.

dask and xarray are imported only when asked for, so ``import cellvol`` stays light.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cellvol.read._level import Level
    from cellvol.read._volume import Volume

__all__ = ["level_to_dask", "level_to_xarray", "volume_html"]


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
        name=f"cellvol-{level.array.store_path}-{level.path}",
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


def volume_html(volume: Volume) -> str:
    """A Jupyter representation: the levels table and the coarsest level's middle planes."""
    rows = []
    for level in volume.levels:
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
    unit = volume.unit or "unitless"
    thumbnail = _thumbnail(volume)
    picture = f'<img src="data:image/png;base64,{thumbnail}"/>' if thumbnail else ""
    return (
        f"<div><strong>cellvol.Volume</strong> {html.escape(volume.url)}<br/>"
        f"{volume.dtype}, axes {','.join(volume.axes)}, OME-Zarr {volume.ome_version or '-'}"
        "<table><tr><th>level</th><th>shape</th><th>chunks</th><th>shards</th>"
        f"<th>voxel ({html.escape(unit)})</th><th>size</th></tr>{''.join(rows)}</table>"
        f"{picture}</div>"
    )


def _thumbnail(volume: Volume) -> str | None:
    """The coarsest level's three middle planes side by side, as base64 PNG; None if not 3-D."""
    from PIL import Image

    level = volume.levels[-1]
    if level.ndim != 3:
        return None
    z, y, x = (n // 2 for n in level.shape)
    planes = [level[z], level[:, y], level[:, :, x]]
    height = max(p.shape[0] for p in planes)
    canvas = np.zeros((height, sum(p.shape[1] for p in planes) + 8 * 2), np.uint8)
    column = 0
    for plane in planes:
        canvas[: plane.shape[0], column : column + plane.shape[1]] = _to_bytes(plane)
        column += plane.shape[1] + 8
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_bytes(plane: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    values = plane.astype(np.float64)
    low, high = np.percentile(values, (0.5, 99.5))
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
