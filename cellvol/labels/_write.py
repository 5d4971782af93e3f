"""Label images (segmentations) stored with the image they segment, as OME-Zarr ``labels``.

Layout, as OME-Zarr 0.5 describes it::

    image.ome.zarr/
        labels/             group; attributes ome.labels = ["cells", ...]
            cells/          a multiscale image of integer IDs, downsampled with ``mode``;
                            attributes ome.image-label = {colors, properties, source}
                segments/   cellvol's segment table (see ``_segments``)
                meshes/     each segment's surface (see ``_meshes``)

A label pyramid has the image's levels, factors, voxel size, origin and shard layout, so each
level overlays the image's level of the same index voxel for voxel. Writing is resumable: the
pyramid is written by :func:`cellvol.write_pyramid` (which resumes), then the name is
registered, then the segment table is computed and stored, and the colours written last; each
step brings the digests of the image it changes up to date (``cellvol.write._digests``); the
segments' surfaces (``meshes/``, see ``_meshes``) come last. Run again after an interruption,
:func:`write_labels` finishes whatever is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from cellvol._codec._cache import ChunkCache
from cellvol._store import make_durable, open_store
from cellvol.errors import InvalidInputError, MetadataError, NotOMEZarrError, StoreNotFoundError
from cellvol.formats._open import open_source
from cellvol.labels._meshes import store_meshes
from cellvol.labels._segments import compute_segments, write_segments
from cellvol.ome._display import label_color
from cellvol.ome._metadata import ome_namespace, stored_attributes
from cellvol.progress import ProgressCallback
from cellvol.read._open import open as open_volume
from cellvol.read._segments import SEGMENTS_PATH, SegmentTable
from cellvol.read._volume import LABELS_GROUP, LabelImage, Volume, label_names
from cellvol.write._digests import editing, refresh_digests, rewrite_crate

__all__ = ["store_image_label", "validate_label_attributes", "write_labels"]

# Above this many segments no colour list is written: viewers colour IDs themselves, and a
# list that long would bloat the metadata every viewer reads first.
MAX_COLORS = 10_000
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def write_labels(
    image: str | os.PathLike[str],
    labels: Any,
    name: str,
    *,
    colors: Mapping[int, Sequence[int]] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    meshes: bool = True,
) -> LabelImage:
    """Add a label image (segmentation) to an existing image, or finish adding it.

    Parameters
    ----------
    image
        The OME-Zarr image the labels segment (local path or URL).
    labels
        A 3-D integer array with the image's full-resolution shape (numpy, dask, any sliceable
        array), or a file cellvol converts (MRC, TIFF stack, HDF5, ``.npy``, zarr). For an
        image with channels, the ``(z, y, x)`` shape of one channel.
    name
        The label image's name under ``labels/`` (letters, digits, ``_ - .``).
    colors
        RGBA colours for some IDs; every other segment gets :func:`label_color`'s.
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``key``/``secret``...).
    overwrite
        Replace labels of that name written before.
    progress
        Called with :class:`~cellvol.progress.ProgressEvent` as the pyramid is written.
    meshes
        Compute every segment's surface and store it with the labels (see
        :func:`cellvol.compute_meshes`, which computes them later when this is off).

    Returns
    -------
    LabelImage
        The labels as read back, with their segment table.

    Raises
    ------
    InvalidInputError
        For a bad name, non-integer labels, or labels whose shape is not the image's.
    NotOMEZarrError
        If ``image`` is not an OME-Zarr image.
    StoreNotFoundError
        If nothing exists at ``image``.
    """
    from cellvol.write._pyramid import write_pyramid  # the writer pulls in dask: only when writing

    if not name or set(name) - _NAME_CHARACTERS or name.startswith("."):
        raise InvalidInputError(
            f"label name {name!r} is invalid: use letters, digits, '_', '-' and '.' (not leading)"
        )
    options = dict(storage_options or {})
    try:
        target = open_volume(image, options, cache=ChunkCache(0))
    except StoreNotFoundError as exc:
        raise StoreNotFoundError(
            f"no image to add labels {name!r} to: {exc.message}",
            hint="labels go into an existing OME-Zarr image; write the image first",
        ) from exc
    if isinstance(target, LabelImage) or target.ome_version is None:
        raise NotOMEZarrError(f"{target.url} is not an OME-Zarr image to add labels to")
    source = _label_source(labels)
    # An image with channels (and time points) is labelled on its spatial grid, a channel's.
    grid = target.channel(0) if target.channels else target
    base = grid.levels[0]
    if tuple(source.shape) != base.shape:
        raise InvalidInputError(
            f"labels of shape {tuple(source.shape)} do not match image {target.url}, whose "
            f"full-resolution shape is {base.shape} (z, y, x)"
            + (f" in each of its {len(target.channels)} channels" if target.channels else "")
        )
    dtype = np.dtype(source.dtype)
    if dtype.kind not in "iu":
        raise InvalidInputError(
            f"labels must be integers (uint8 to uint64, int8 to int64); got {dtype}"
        )
    voxel = target.voxel_size
    if voxel is None:
        raise InvalidInputError(f"{target.url} is not a 3-D (z, y, x) image")
    url = f"{target.url.rstrip('/')}/{LABELS_GROUP}/{name}"
    # The image's lease for the whole operation: its label list, the label pyramid and its
    # segment table change together, and no other write of the image may interleave.
    image_store = open_store(target.url, mode="a", storage_options=options)
    version = "0.6" if target.ome_version == "0.6" else "0.5"  # labels follow their image
    with editing(image_store, target.url):
        write_pyramid(
            source,
            url,
            voxel,
            method="mode",
            chunks=base.chunks,
            shards=base.shards,
            factors=_factors(grid),
            origin=base.translation,
            name=name,
            storage_options=options,
            overwrite=overwrite,
            progress=progress,
            image_label={"version": version, "source": {"image": "../../"}},
            ome_version=version,
        )
        _register(target.url, name, options, version)
        written = open_volume(url, options, cache=ChunkCache(0))
        assert isinstance(written, LabelImage)
        level = written.levels[0]
        table = compute_segments(
            level.__getitem__,
            level.shape,
            scale=level.scale,
            translation=level.translation,
            unit=voxel.unit,
        )
        store = open_store(url, mode="a", storage_options=options)
        group = zarr.open_group(store=store, mode="a", zarr_format=3)
        write_segments(group, table)
        refresh_digests(store, "", [f"{SEGMENTS_PATH}/"])
        _write_colors(group, table, colors or {})
        if meshes:
            store_meshes(url, options)
        rewrite_crate(image_store, target.url)  # the image's crate now lists these labels
    return _reopened(url, options)


def _reopened(url: str, options: Mapping[str, Any]) -> LabelImage:
    volume = open_volume(url, options)
    if not isinstance(volume, LabelImage):
        raise MetadataError(f"{url}: the label image's metadata did not read back")
    return volume


def _label_source(labels: Any) -> Any:
    if isinstance(labels, str | os.PathLike):
        return open_source(labels).array
    if not all(hasattr(labels, attr) for attr in ("shape", "dtype", "__getitem__")):
        raise InvalidInputError(
            f"labels must be an array or a file path; got {type(labels).__name__}"
        )
    return labels


def _factors(image: Volume) -> list[tuple[int, int, int]]:
    """Each level's downsampling factors from the one before, from the levels' scales."""
    factors = []
    for lower, upper in zip(image.levels, image.levels[1:], strict=False):
        ratio = [u / low for u, low in zip(upper.scale, lower.scale, strict=True)]
        rounded = tuple(round(r) for r in ratio)
        if any(abs(r - q) > 1e-6 * q or q < 1 for r, q in zip(ratio, rounded, strict=True)):
            raise InvalidInputError(
                f"{image.url}: level {upper.index}'s scale is not a whole multiple of level "
                f"{lower.index}'s ({upper.scale} vs {lower.scale}); labels cannot match it"
            )
        factors.append(rounded)
    return factors  # type: ignore[return-value]


def _register(image_url: str, name: str, options: Mapping[str, Any], version: str) -> None:
    """List ``name`` in the image's ``labels`` group, creating the group if needed."""
    store = open_store(image_url, mode="a", storage_options=options)
    root = zarr.open_group(store=store, mode="a", zarr_format=3)
    group = root.require_group(LABELS_GROUP)
    names = label_names(root)
    if name not in names:
        group.attrs.update({"ome": {"version": version, "labels": [*names, name]}})
    make_durable(store, [f"{LABELS_GROUP}/zarr.json"])
    refresh_digests(store, "", [f"{LABELS_GROUP}/zarr.json"])


def _write_colors(
    group: zarr.Group, table: SegmentTable, chosen: Mapping[int, Sequence[int]]
) -> None:
    """Write the image-label colours, keeping any properties already annotated."""
    for label, rgba in chosen.items():
        if len(rgba) != 4 or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgba):
            raise InvalidInputError(f"colour of label {label} must be 4 integers 0-255: {rgba}")
    attributes = dict(group.attrs)
    image_label = dict(ome_namespace(attributes).get("image-label") or {})
    listed = [int(i) for i in table.ids] if len(table) <= MAX_COLORS else []
    colors = {i: list(label_color(i)) for i in listed}
    colors.update({int(k): list(v) for k, v in chosen.items()})
    image_label["colors"] = [{"label-value": i, "rgba": rgba} for i, rgba in colors.items()]
    store_image_label(group, image_label, table)


def store_image_label(
    group: zarr.Group, image_label: Mapping[str, Any], table: SegmentTable
) -> None:
    """Write ``image_label`` into the group's metadata, colours and properties made to agree.

    Every ID with a colour gets a properties entry (with its voxel count, which viewers such as
    napari show) and every annotated ID a colour, as ome-zarr-models requires of the two
    lists.
    """
    colors = {int(c["label-value"]): list(c["rgba"]) for c in image_label.get("colors") or ()}
    properties = {int(p["label-value"]): dict(p) for p in image_label.get("properties") or ()}
    for label in set(colors) | set(properties):
        colors.setdefault(label, list(label_color(label)))
        entry = properties.setdefault(label, {"label-value": label})
        if label in table:
            entry["voxel_count"] = int(table[label]["voxel_count"])
    updated = dict(image_label)
    updated["colors"] = [{"label-value": i, "rgba": colors[i]} for i in sorted(colors)]
    updated["properties"] = [properties[i] for i in sorted(properties)]
    if not colors:
        updated.pop("colors")
        updated.pop("properties")
    ome = dict(ome_namespace(dict(group.attrs)))
    ome["image-label"] = updated
    validate_label_attributes(ome, str(group.store_path))
    group.attrs.update(stored_attributes({"ome": ome}, str(group.store_path)))
    make_durable(group.store, [f"{group.path}/zarr.json" if group.path else "zarr.json"])
    refresh_digests(group.store, group.path, ["zarr.json"])


def validate_label_attributes(ome: Mapping[str, Any], where: str) -> None:
    """Check the label image's metadata with ome-zarr-models (cellvol's own bug if it fails)."""
    from ome_zarr_models.v05.image_label import ImageLabelAttrs
    from ome_zarr_models.v06.image_label import ImageLabelAttrs as ImageLabelAttrs06
    from pydantic import ValidationError

    model = ImageLabelAttrs06 if ome.get("version") == "0.6" else ImageLabelAttrs
    try:
        model.model_validate(dict(ome))
    except ValidationError as exc:
        raise MetadataError(f"{where}: label metadata fails the OME-Zarr schema: {exc}") from exc
