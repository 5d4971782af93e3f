"""Neuroglancer states of served images and scenes: sources it reads, a layer per channel.

What neuroglancer (checked: 2.41.2, see docs/format.md) reads of cellvol's keys:

- an OME-Zarr **0.4** or **0.5** group (``zarr2://`` or ``zarr3://.../data/NAME/``, after the
  group's zarr format: 0.4 groups are zarr v2), with its pyramid; its model
  coordinates are the image's physical coordinates divided by level 0's voxel size (voxel
  centres on whole numbers);
- not a **0.6** group: it stops at "OME multiscale metadata version "0.6" is not supported".
  The layer then reads level 0's array itself (``zarr3://.../data/NAME/0/``), a plain zarr v3
  array whose model coordinates are voxel indices (voxel ``i`` spanning ``[i, i + 1)``), and
  the layer's transform gives it the physical placement; neuroglancer sees one level only;
- the ``omero`` colours and windows only at the top of the attributes, where 0.4 kept them,
  not under ``ome`` where 0.5 and 0.6 put them: each channel's layer carries them itself.

Every layer gets an explicit source ``transform`` into one output space: the reference's
physical space (``z, y, x``) in units of the reference's level-0 voxels, the voxel size in
metres as each dimension's scale, so that neuroglancer reports the reference's voxel size. An
image with channels becomes one layer per channel (the channel axis as the layer's local
dimension ``c'``, placed at that channel; a time axis as ``t'`` at time point 0), tinted with
the channel's colour through its window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError
from cellvol.ome._display import Window
from cellvol.read._resample import index_matrix
from cellvol.read._scene import spatial
from cellvol.read._volume import Volume
from cellvol.server._channels import Channel
from cellvol.units import UNIT_IN_NM

__all__ = [
    "NEUROGLANCER",
    "LayerImage",
    "image_layers",
    "output_dimensions",
    "reads_group",
    "state",
]

#: Where viewer links open neuroglancer; the state follows in the URL fragment.
NEUROGLANCER: Final = "https://neuroglancer-demo.appspot.com/#!"
#: The OME-Zarr versions whose groups neuroglancer reads (its pyramid included).
GROUP_VERSIONS: Final = frozenset({"0.4", "0.5"})

# A channel's colour times its windowed value: the shader of neuroglancer's own per-channel
# layers, with the colour and the window as controls the user can change.
_CHANNEL_SHADER: Final = """#uicontrol invlerp normalized
#uicontrol vec3 color color
void main() {
  emitRGB(color * normalized());
}
"""


@dataclass(frozen=True)
class LayerImage:
    """An image to show: its layer name, served data URL, volume, channels and window.

    ``to_reference`` maps its physical coordinates to the reference's (``4 x 4``, ``z, y,
    x``, in each image's unit); the identity for the reference itself.
    """

    name: str
    data_url: str
    volume: Volume
    channels: Sequence[Channel]
    window: Window | None
    to_reference: npt.NDArray[np.float64]


def reads_group(volume: Volume) -> bool:
    """Whether neuroglancer reads the image's OME group (else: level 0's array)."""
    return volume.ome_version in GROUP_VERSIONS


def _scheme(volume: Volume) -> str:
    """The data source neuroglancer needs for the image's zarr format: ``zarr2`` or ``zarr3``.

    It does not look for the other format's documents: a zarr v2 image (OME-Zarr 0.4) linked
    as ``zarr3`` fails on the missing ``zarr.json``. The group and its arrays share a format.
    """
    return f"zarr{volume.levels[0].array.metadata.zarr_format}"


def output_dimensions(reference: Volume) -> dict[str, list[Any]]:
    """The state's dimensions: ``z, y, x`` scaled by the reference's level-0 voxel, in metres."""
    level = spatial(reference).levels[0]
    metres = UNIT_IN_NM.get(reference.unit or "nanometer", 1.0) * 1e-9
    return {axis: [float(s) * metres, "m"] for axis, s in zip("zyx", level.scale, strict=True)}


def image_layers(image: LayerImage, reference: Volume) -> list[dict[str, Any]]:
    """The image's layers: one for a plain image, one per channel for an image with channels.

    Raises
    ------
    InvalidInputError
        If ``image.channels`` are not one per channel of the volume's channel axis.
    """
    volume = image.volume
    if len(image.channels) != len(volume.channels):
        raise InvalidInputError(
            f"{image.name}: axes {volume.axes} hold {len(volume.channels)} channels, "
            f"but {len(image.channels)} channels were given for its layers"
        )
    base = spatial(volume).levels[0]
    if reads_group(volume):
        url = f"{_scheme(volume)}://{image.data_url}"
        # Model coordinates: physical / level-0 voxel size (the OME reader's convention).
        model = np.diag([*base.scale, 1.0])
    else:
        url = f"{_scheme(volume)}://{image.data_url}{volume.levels[0].path}/"
        # Model coordinates: voxel indices, voxel i's centre at i + 0.5; OME's is at i.
        centre = np.eye(4)
        centre[:3, 3] = -0.5
        model = index_matrix(base) @ centre
    voxel = np.diag([*(1.0 / np.asarray(spatial(reference).levels[0].scale)), 1.0])
    spatial_matrix = (voxel @ image.to_reference @ model)[:3]
    output = output_dimensions(reference)
    if not image.channels:
        layer: dict[str, Any] = {
            "type": "image",
            "name": image.name,
            "source": {"url": url, "transform": _transform(volume, spatial_matrix, output)},
        }
        if image.window is not None:
            layer["shaderControls"] = {"normalized": {"range": _range(image.window)}}
        return [layer]
    # The axes before z, y, x (c, or t and c) each get a row of their own, shifted like the
    # model's centres, and become dimensions local to the layer: its time point and channel.
    lead = list(volume.axes[: -len(output)])
    rank = len(lead) + len(output)
    matrix = np.zeros((rank, rank + 1))
    for row in range(len(lead)):
        matrix[row, row] = 1.0
        matrix[row, rank] = 0.0 if reads_group(volume) else -0.5
    matrix[len(lead) :, len(lead) :] = spatial_matrix
    local = {f"{axis}'": [1, ""] for axis in lead}
    transform = _transform(volume, matrix, {**local, **output})
    return [
        {
            "type": "image",
            "name": f"{image.name} {channel.name}",
            "source": {"url": url, "transform": transform},
            "localDimensions": local,
            # Time point 0, as the server's channels (``channels_of_image``).
            "localPosition": [index if axis == "c" else 0 for axis in lead],
            "shader": _CHANNEL_SHADER,
            "shaderControls": {
                "normalized": {"range": _range(channel.window)},
                "color": f"#{channel.color.lower()}",
            },
            # Opaque: neuroglancer's default opacity (0.5) would halve every colour.
            "opacity": 1.0,
            "blend": "additive",
        }
        for index, channel in enumerate(image.channels)
    ]


def state(layers: Sequence[Mapping[str, Any]], reference: Volume) -> dict[str, Any]:
    """A whole state: the layers in the reference's space, four panels."""
    # neuroglancer draws its first dimension across and its second down the XY panel.
    dimensions = output_dimensions(reference)
    return {
        "dimensions": {axis: dimensions[axis] for axis in "xyz"},
        "layers": list(layers),
        "layout": "4panel",
    }


def _transform(
    volume: Volume, matrix: npt.NDArray[np.float64], output: dict[str, list[Any]]
) -> dict[str, Any]:
    """A source transform: ``matrix`` from the source's coordinates to ``output``'s.

    neuroglancer rescales a matrix by each input dimension's scale over its output's: the
    input dimensions are declared with the output's scales, so ``matrix`` applies as it is
    (a plain array's dimensions have no unit, which it would otherwise take for metres).
    """
    names = list(volume.axes)
    if reads_group(volume):  # the OME reader names a channel axis c' (local to the layer)
        names = ["c'" if n == "c" else n for n in names]
    scales = list(output.values())
    return {
        "inputDimensions": dict(zip(names, scales, strict=True)),
        "outputDimensions": output,
        "matrix": matrix.tolist(),
    }


def _range(window: Window) -> list[float]:
    return [float(window.start), float(window.end)]
