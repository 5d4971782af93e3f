"""The ``ome`` object of an OME-Zarr 0.6 image, built through ome-zarr-models' ``v06`` models.

cellvol writes 0.5 by default; 0.6 when asked. Its images are ``z, y, x`` volumes in one
coordinate system, ``physical``, into which each level maps by a scale, or by a scale then a
translation when the volume has an origin: the simplest placement 0.6 allows, which every 0.6
reader handles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from cellvol.errors import MetadataError

__all__ = ["PHYSICAL", "axis_fields", "image_ome_06"]

#: The name of the coordinate system cellvol's images are placed in.
PHYSICAL: Final = "physical"


#: Axis types by name for the axes that are not lengths; every other axis is ``space``.
_NON_SPATIAL = {"t": "time", "c": "channel"}


def axis_fields(name: str, unit: str) -> dict[str, str]:
    """An axis's ``type`` and ``unit``: time and channel axes carry no length unit."""
    kind = _NON_SPATIAL.get(name)
    return {"name": name, "type": kind} if kind else {"name": name, "type": "space", "unit": unit}


def image_ome_06(
    levels: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    axes: Sequence[str],
    unit: str,
    *,
    name: str,
    method: str,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``ome`` object of a 0.6 image whose levels are ``(path, scale, translation)``.

    Raises
    ------
    MetadataError
        If ome-zarr-models rejects the document (a bug in cellvol, reported loudly).
    """
    from ome_zarr_models.v06.coordinate_transforms import Axis, CoordinateSystem
    from ome_zarr_models.v06.image import ImageAttrs
    from ome_zarr_models.v06.multiscales import Dataset, Multiscale
    from pydantic import ValidationError

    try:
        model = ImageAttrs(
            version="0.6",
            multiscales=[
                Multiscale(
                    name=name,
                    type=method,
                    metadata=dict(metadata),
                    coordinateSystems=(
                        CoordinateSystem(
                            name=PHYSICAL,
                            axes=tuple(Axis.model_validate(axis_fields(a, unit)) for a in axes),
                        ),
                    ),
                    datasets=tuple(
                        Dataset.build(
                            path=path,
                            scale=list(scale),
                            # A zero translation is left out: the level is then one scale.
                            translation=list(shift) if any(shift) else None,
                            coord_sys_output_name=PHYSICAL,
                        )
                        for path, scale, shift in levels
                    ),
                )
            ],
        )
    except ValidationError as exc:
        raise MetadataError(f"cellvol built invalid OME-Zarr 0.6 metadata: {exc}") from exc
    ome: dict[str, Any] = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return ome
