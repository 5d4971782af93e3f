"""The catalog's entry for a served volume: its geometry, labels, channels, viewer links."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import numpy as np

from cellvol.errors import InvalidInputError
from cellvol.server._neuroglancer import NEUROGLANCER, LayerImage, image_layers, state
from cellvol.units import convert_lengths

if TYPE_CHECKING:
    from cellvol.server._app import Served

__all__ = ["catalog_entry"]


def catalog_entry(served: Served, base: str) -> dict[str, Any]:
    """One served volume as ``/catalog`` lists it."""
    volume = served.volume
    labels = []
    for name in volume.labels:
        image = volume.labels[name]
        count = image.segment_count  # from the table's metadata: the table may be large
        annotated = {str(k): v for k, v in image.properties.items() if set(v) - {"voxel_count"}}
        labels.append({"name": name, "segments": count, "annotations": annotated})
    data_url = f"{base}/data/{served.name}/"
    return {
        "name": served.name,
        "source": served.url,
        "data": data_url,
        "view": f"{base}/view/{served.name}",
        "neuroglancer": _neuroglancer_link(data_url, served),
        "dtype": str(volume.dtype),
        "shape": list(volume.shape),
        "axes": list(volume.axes),
        "unit": volume.unit,
        # How many nanometres one unit is (None: not a length unit): the page converts with
        # it, so it needs no table of units of its own.
        "nm_per_unit": _nm_per(volume.unit),
        "window": served.window.to_json(),
        "levels": [
            {
                "index": level.index,
                "path": level.path,
                "shape": list(level.shape),
                # z, y, x for volumes; the pixel size (y, x) of a 2-D image
                "voxel_size": list(level.spacing) or None,
                "scale": list(level.scale),
                "translation": list(level.translation),
                "chunks": list(level.chunks),
                "shards": list(level.shards) if level.shards else None,
            }
            for level in served.planes.levels
        ],
        "labels": labels,
        "channels": [c.to_json() for c in served.channels],
    }


def _nm_per(unit: str | None) -> float | None:
    try:
        return convert_lengths([1.0], unit, "nanometer")[0] if unit else None
    except InvalidInputError:
        return None


def _neuroglancer_link(data_url: str, served: Served) -> str:
    """A neuroglancer link showing the image on its own (one layer per channel)."""
    volume = served.volume
    image = LayerImage(
        name=served.name,
        data_url=data_url,
        volume=volume,
        channels=served.channels,
        window=served.window,
        to_reference=np.eye(4),
    )
    found = state(image_layers(image, volume), volume)
    fragment = urllib.parse.quote(json.dumps(found, separators=(",", ":")), safe="")
    return NEUROGLANCER + fragment
