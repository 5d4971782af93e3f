"""Zarr arrays and OME-Zarr images (their full-resolution level), to re-chunk and re-pyramid."""

from __future__ import annotations

from cellvol.formats._source import Source
from cellvol.read._open import open as open_volume

__all__ = ["open_zarr"]


def open_zarr(path_or_url: str) -> Source:
    """Open the full-resolution level of an OME-Zarr image, or a bare zarr array.

    The voxel size comes from the OME-Zarr metadata; a bare array has none.
    """
    volume = open_volume(path_or_url)
    level = volume.levels[0]
    kind = f"OME-Zarr {volume.ome_version}" if volume.ome_version else "a zarr array"
    return Source(
        array=level,  # reads through the level, so a shard the manifest lists must exist
        voxel_size=volume.voxel_size if volume.ome_version else None,
        description=f"{volume.url}: level 0 of {kind} {level.shape} {level.dtype}",
        details={"url": volume.url, "ome_version": volume.ome_version},
    )
