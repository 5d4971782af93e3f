"""Finding one label image of an image by name: one lookup, one error, for every labels task."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cellvol._codec._cache import ChunkCache
from cellvol.errors import InvalidInputError
from cellvol.read._open import open as open_volume
from cellvol.read._volume import LabelImage, Volume

__all__ = ["find_labels", "open_labels"]


def find_labels(volume: Volume, name: str) -> LabelImage:
    """Labels ``name`` of an open image.

    Raises
    ------
    InvalidInputError
        Naming the image and the labels it has, for an unknown name.
    """
    if name not in volume.labels:
        known = ", ".join(sorted(volume.labels)) or "none"
        raise InvalidInputError(f"{volume.url} has no labels {name!r} (labels: {known})")
    return volume.labels[name]


def open_labels(
    image: str | os.PathLike[str],
    name: str,
    storage_options: Mapping[str, Any] | None = None,
    cache: ChunkCache | None = None,
) -> LabelImage:
    """Open ``image`` and return its labels ``name`` (see :func:`find_labels`)."""
    return find_labels(open_volume(image, storage_options, cache=cache), name)
