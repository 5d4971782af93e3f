"""Open any OME-Zarr image (0.4 or 0.5) or bare zarr array as a :class:`Volume`.

A volume is a list of levels, finest first. Each :class:`Level` is sliced numpy-style and
returns numpy arrays; ``volume[...]`` slices level 0.

Layouts recognised, in this order: an image group with ``multiscales`` metadata (0.5 under the
``ome`` key, 0.4 at the top level); a bioformats2raw collection (its first image, ``0``); a bare
zarr array, read as a single level with unit voxel size.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import zarr

from cellvol._codec._cache import ChunkCache, default_cache
from cellvol._codec._layout import chunk_layout
from cellvol._codec._reader import ChunkReader
from cellvol._codec._shard import CRC_BYTES
from cellvol._store import open_store, parse_location
from cellvol._store._nodes import open_node, read_arrays
from cellvol.errors import IntegrityError, MetadataError, NotOMEZarrError
from cellvol.ome._manifest import MANIFEST_KEY, layout_differences, parse_manifest
from cellvol.ome._metadata import (
    PROVENANCE_KEY,
    Axis,
    Dataset,
    Multiscale,
    ome_namespace,
    read_multiscale,
)
from cellvol.read._integrity import ShardPresence
from cellvol.read._level import Level
from cellvol.read._volume import LabelImage, Volume
from cellvol.units import SPATIAL_AXES

_BF2RAW_KEY = "bioformats2raw.layout"


def open(
    path_or_url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    cache: ChunkCache | None = None,
    salvage: bool = False,
) -> Volume:
    """Open an OME-Zarr image or a zarr array for reading.

    Parameters
    ----------
    path_or_url
        A local path, ``file://``, ``s3://bucket/key`` or ``http(s)://`` URL.
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``anon``, ``key``/``secret``...).
    cache
        Where decoded chunks are kept between reads; by default the process-wide
        :func:`cellvol._codec._cache.default_cache` (256 MiB, ``CELLVOL_CACHE_BYTES`` to change it).
        ``ChunkCache(0)`` disables caching.
    salvage
        Open an image cellvol wrote whose write manifest is missing, to rescue what is left:
        without the manifest a lost shard reads as zeros. Refused otherwise.

    Raises
    ------
    StoreNotFoundError
        If nothing exists at the location.
    NotOMEZarrError
        If the location holds neither an OME-Zarr image nor a zarr array.
    MetadataError
        If the multiscale metadata is present but unusable.
    IntegrityError
        If cellvol wrote the image and its write manifest is missing (see ``salvage``).
    UnsupportedURLError
        For a URL scheme cellvol cannot open.
    """
    location = parse_location(path_or_url)
    store = open_store(location.url, mode="r", storage_options=storage_options)
    node = open_node(store, location.url)
    cache = cache if cache is not None else default_cache()
    if isinstance(node, zarr.Array):
        return _bare_array_volume(location.url, node, cache)
    return _image_volume(
        location.url, node, cache, storage_options, with_manifest=True, salvage=salvage
    )


def _image_volume(
    url: str,
    group: zarr.Group,
    cache: ChunkCache,
    storage_options: Mapping[str, Any] | None = None,
    *,
    with_manifest: bool = False,
    salvage: bool = False,
) -> Volume:
    attributes = dict(group.attrs)
    multiscale = read_multiscale(attributes, where=url)
    if multiscale is None and _is_bioformats2raw(attributes):
        try:
            series = group["0"]
        except KeyError:
            raise NotOMEZarrError(f"{url}: bioformats2raw layout without image '0'") from None
        if isinstance(series, zarr.Group):
            return _image_volume(f"{url.rstrip('/')}/0", series, cache, storage_options)
    if multiscale is None:
        raise NotOMEZarrError(
            f"{url} is a zarr group without OME-Zarr 'multiscales' metadata: not an OME-Zarr "
            "image, or a write that did not finish"
        )
    paths = [dataset.path for dataset in multiscale.datasets]
    # The levels' documents and the write's manifest come in one round of requests.
    arrays, others = read_arrays(group, paths, url, also=[MANIFEST_KEY] if with_manifest else [])
    manifest = parse_manifest(others[0], url) if with_manifest else None
    if with_manifest and manifest is None and PROVENANCE_KEY in attributes and not salvage:
        # cellvol writes the manifest before the metadata: an image of its own without one
        # has lost it, and nothing would tell a lost shard from a block of zeros.
        raise IntegrityError(
            f"{url} was written by cellvol but its write manifest {MANIFEST_KEY} is missing, "
            "so lost shards could not be told from zeros",
            hint="restore the image from a copy, or open it with {salvage=True} to read what "
            "is left",
        )
    store = group.store
    levels: list[Level] = []
    for index, (dataset, array) in enumerate(zip(multiscale.datasets, arrays, strict=True)):
        if array is None:
            raise MetadataError(
                f"{url}: level {index} names array {dataset.path!r}, which does not exist"
            )
        if array.ndim != len(multiscale.axes):
            raise MetadataError(
                f"{url}: level {index} array {dataset.path!r} is {array.ndim}-D but the "
                f"metadata names {len(multiscale.axes)} axes {multiscale.axis_names}"
            )
        presence = None
        if manifest is not None:
            _check_layout(array, manifest.arrays.get(dataset.path), url, dataset.path)
            listed = manifest.shards.get(dataset.path)
            layout = chunk_layout(array)
            if listed is not None and array.shards is not None and layout is not None:
                tail = layout.index_nbytes + CRC_BYTES
                presence = ShardPresence(store, url, dataset.path, array.shards, listed, tail)
        levels.append(
            Level(
                index,
                dataset.path,
                array,
                dataset.scale,
                dataset.translation,
                multiscale.axes,
                presence,
                _direct_reader(array, cache, url, dataset.path, presence),
            )
        )
    kind = LabelImage if "image-label" in ome_namespace(attributes) else Volume
    return kind(
        url,
        multiscale,
        tuple(levels),
        attributes,
        group=group,
        storage_options=storage_options,
        cache=cache,
        open_part=functools.partial(open, storage_options=storage_options, cache=cache),
    )


def _is_bioformats2raw(attributes: Mapping[str, Any]) -> bool:
    ome = attributes.get("ome")
    return _BF2RAW_KEY in attributes or (isinstance(ome, Mapping) and _BF2RAW_KEY in ome)


def _direct_reader(
    array: zarr.Array[Any],
    cache: ChunkCache,
    url: str,
    path: str,
    presence: ShardPresence | None,
) -> ChunkReader | None:
    layout = chunk_layout(array)
    if layout is None:
        return None
    if presence is None:
        return ChunkReader(array.store_path, layout, cache, url, path)
    return ChunkReader(
        array.store_path, layout, cache, url, path, presence.expects, presence.fingerprint
    )


def _check_layout(
    array: zarr.Array[Any], recorded: Mapping[str, Any] | None, url: str, path: str
) -> None:
    """Refuse a level whose zarr metadata is not what the write created (edited since)."""
    if recorded is None:
        return  # a manifest written before layouts were recorded
    for field, value, created in layout_differences(array, recorded):
        raise IntegrityError(
            f"{url}: the metadata of level {path} ({path}/zarr.json) gives {field} {value}, "
            f"but the write created {created}: the metadata was changed after the write, and "
            "the data would be read wrongly"
        )


def _bare_array_volume(url: str, array: zarr.Array[Any], cache: ChunkCache) -> Volume:
    names = _dimension_names(array)
    axes = tuple(
        Axis(name=n, type="space" if n in SPATIAL_AXES else None, unit=None) for n in names
    )
    ones = tuple(1.0 for _ in names)
    zeros = tuple(0.0 for _ in names)
    multiscale = Multiscale(version="", axes=axes, datasets=(Dataset("", ones, zeros),))
    reader = _direct_reader(array, cache, url, "", None)
    level = Level(0, "", array, ones, zeros, axes, None, reader)
    return Volume(url, multiscale, (level,), {}, cache=cache)


def _dimension_names(array: zarr.Array[Any]) -> tuple[str, ...]:
    stored = getattr(array.metadata, "dimension_names", None)
    if stored and all(isinstance(n, str) for n in stored):
        return tuple(stored)
    # Without names, the last three axes of an array are taken as z, y, x.
    defaults = ("t", "c", *SPATIAL_AXES)
    if array.ndim <= len(defaults):
        return defaults[len(defaults) - array.ndim :]
    return tuple(f"dim_{i}" for i in range(array.ndim))
