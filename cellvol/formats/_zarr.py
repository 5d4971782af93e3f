"""Zarr arrays and OME-Zarr images (their full-resolution level), to re-chunk and re-pyramid."""

from __future__ import annotations

from cellvol.formats._source import Source
from cellvol.ome._display import channels_of
from cellvol.read._open import open as open_volume
from cellvol.units import SPATIAL_AXES
from cellvol.write._channels import AXES_BY_NDIM

__all__ = ["open_zarr"]


def open_zarr(path_or_url: str) -> Source:
    """Open the full-resolution level of an OME-Zarr image, or a bare zarr array.

    The voxel size comes from the OME-Zarr metadata; a bare array has none.
    """
    volume = open_volume(path_or_url)
    level = volume.levels[0]
    kind = f"OME-Zarr {volume.ome_version}" if volume.ome_version else "a zarr array"
    # An image with channels keeps them, with their names and colours, when its axes are
    # those cellvol writes; other arrays are judged by the writer.
    axes = volume.axes if volume.axes in AXES_BY_NDIM.values() else SPATIAL_AXES
    displays = channels_of(volume.attributes) if "c" in axes else []
    colors = tuple(d.color for d in displays) if len(displays) == len(volume.channels) else None
    return Source(
        array=level,  # reads through the level, so a shard the manifest lists must exist
        voxel_size=volume.voxel_size if volume.ome_version else None,
        description=f"{volume.url}: level 0 of {kind} {level.shape} {level.dtype}",
        details={"url": volume.url, "ome_version": volume.ome_version},
        axes=axes,
        channel_names=volume.channels or None,
        channel_colors=colors or None,
    )
