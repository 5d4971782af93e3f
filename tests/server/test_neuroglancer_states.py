"""The neuroglancer states the server gives, without a browser: sources and placements.

The real viewer opens these states in ``test_neuroglancer.py`` (slow); here each state is
checked against what the image's own metadata says: its zarr format picks the source's
scheme, and its physical origin must reach the transform's translation column.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support import write_ome_zarr_04

import cellvol
from cellvol.errors import InvalidInputError
from cellvol.read._resample import index_matrix
from cellvol.server import Server
from cellvol.server._neuroglancer import LayerImage, image_layers

VOXEL = (8.0, 4.0, 4.0)
ORIGIN = (100.0, -30.0, 7.5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server: a zarr v2 OME-Zarr 0.4 image, and 0.5 and 0.6 images with an origin."""
    root = tmp_path_factory.mktemp("states")
    data = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16)
    write_ome_zarr_04(root / "v04.zarr", data, [0.5, 0.25, 0.25])
    paths = [str(root / "v04.zarr")]
    for version in ("0.5", "0.6"):
        path = root / f"moved{version.replace('.', '')}.ome.zarr"
        cellvol.write_pyramid(data, path, VOXEL, n_levels=2, ome_version=version, origin=ORIGIN)
        paths.append(str(path))
    with Server(paths) as server:
        yield server.url


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return bytes(reply.read())


def _catalog_state(url: str, name: str) -> dict[str, Any]:
    catalog = json.loads(_get(f"{url}catalog"))
    (entry,) = [v for v in catalog["volumes"] if v["name"] == name]
    return dict(json.loads(urllib.parse.unquote(entry["neuroglancer"].split("#!", 1)[1])))


def test_a_04_image_is_linked_as_zarr_v2(served: str) -> None:
    (layer,) = _catalog_state(served, "v04")["layers"]
    assert layer["source"]["url"] == f"zarr2://{served}data/v04/"
    # What neuroglancer's zarr2 source reads is served; the zarr3 one's document is not.
    assert json.loads(_get(f"{served}data/v04/.zattrs"))["multiscales"][0]["version"] == "0.4"
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(f"{served}data/v04/zarr.json")
    assert caught.value.code == 404


@pytest.mark.parametrize("name", ["moved05", "moved06"])
def test_zarr_v3_images_are_linked_as_zarr_v3(served: str, name: str) -> None:
    (layer,) = _catalog_state(served, name)["layers"]
    assert layer["source"]["url"].startswith(f"zarr3://{served}data/{name}/")
    assert json.loads(_get(f"{served}data/{name}/zarr.json"))["zarr_format"] == 3


def test_a_06_image_with_an_origin_is_placed_at_it(served: str) -> None:
    (layer,) = _catalog_state(served, "moved06")["layers"]
    matrix = np.asarray(layer["source"]["transform"]["matrix"])
    level = cellvol.open(_image_path(served, "moved06")).levels[0]
    assert level.translation == pytest.approx(ORIGIN)
    # Voxels as neuroglancer addresses the array (voxel i spans [i, i + 1)), and where the
    # image's metadata puts their centres, in the output's units (level-0 voxels).
    indices = np.array([[0, 0, 0], [15, 15, 15], [3, 9, 12]], float)
    physical = (index_matrix(level) @ np.c_[indices, np.ones(3)].T).T[:, :3]
    placed = (matrix[:, :3] @ (indices + 0.5).T).T + matrix[:, 3]
    assert np.allclose(placed * VOXEL, physical)
    assert np.allclose(matrix[:, 3] * VOXEL, np.asarray(ORIGIN) - 0.5 * np.asarray(VOXEL))


def test_a_05_group_leaves_its_origin_to_neuroglancers_reader(served: str) -> None:
    # neuroglancer's OME reader applies the group's translation to its model coordinates
    # (physical / level-0 voxel): the state must not add it a second time.
    (layer,) = _catalog_state(served, "moved05")["layers"]
    matrix = np.asarray(layer["source"]["transform"]["matrix"])
    assert np.allclose(matrix, np.c_[np.eye(3), np.zeros(3)])


def test_channels_that_disagree_with_the_axes_are_a_clear_error(tmp_path: Any) -> None:
    path = tmp_path / "two.ome.zarr"
    cellvol.write_pyramid(np.zeros((2, 4, 8, 8), np.uint16), path, VOXEL, n_levels=1)
    volume = cellvol.open(path)
    image = LayerImage("two", "http://127.0.0.1/data/two/", volume, [], None, np.eye(4))
    with pytest.raises(InvalidInputError, match=r"two: axes \('c', 'z', 'y', 'x'\).*0 channels"):
        image_layers(image, volume)


def _image_path(url: str, name: str) -> str:
    """The served image, read back through the server as any client would."""
    return f"{url}data/{name}/"
