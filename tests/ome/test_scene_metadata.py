"""Scene metadata: transformations written as 0.6 expects, read back, and composed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ome06_helpers import SPEC06

from cellvol.errors import MetadataError
from cellvol.ome._scene import (
    Place,
    chain,
    read_scene,
    scene_ome,
    spatial_embedding,
    transform_json,
)
from cellvol.ome._validation06 import validate06


def test_the_spec_stitching_scene_composes_tile_to_tile() -> None:
    path = SPEC06 / "examples" / "scene" / "scene_stitching.json"
    if not path.is_file():
        pytest.skip(f"{path} not found: the 0.6 specification lives in ../shared/data")
    attributes = json.loads(path.read_text())["attributes"]
    edges = read_scene(attributes, where=path.name)
    assert len(edges) == 4
    assert edges[1].source == Place("tile_1", "physical")
    assert edges[1].target == Place(None, "world")
    # tile_1 sits 348 along x from tile_0 in the world: through the world and back.
    matrix = chain(edges, Place("tile_1", "physical"), Place("tile_0", "physical"),
                   lambda place: (True, True), path.name)  # fmt: skip
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 348], [0, 0, 1]])


def test_written_transformations_validate_and_read_back() -> None:
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[0.8, -0.6], [0.6, 0.8]]
    rotation[:3, 3] = [1, 2, 3]
    scaled = np.diag([2.0, 3.0, 4.0, 1.0])
    lm, em, fib = Place("lm.zarr", "physical"), Place("em.zarr", "physical"), Place("f", "p")
    entries = [transform_json(rotation, lm, em, "lm to em"), transform_json(scaled, fib, em, "f")]
    ome = scene_ome(entries)
    assert [e["type"] for e in ome["scene"]["coordinateTransformations"]] == ["affine", "scale"]
    assert validate06({"ome": ome}) == []
    edges = read_scene({"ome": ome}, where="s")
    np.testing.assert_allclose(chain(edges, lm, em, lambda p: (True,) * 3, "s"), rotation)
    np.testing.assert_allclose(chain(edges, lm, fib, lambda p: (True,) * 3, "s"),
                               np.linalg.inv(scaled) @ rotation)  # fmt: skip


def test_unjoined_systems_and_non_scenes_are_errors() -> None:
    one = transform_json(np.eye(4), Place("a", "p"), Place("b", "p"), "a")
    edges = read_scene({"ome": scene_ome([one])}, where="s")
    with pytest.raises(MetadataError, match="s: no transformation leads from c#p to a#p"):
        chain(edges, Place("c", "p"), Place("a", "p"), lambda p: (True,) * 3, "s")
    with pytest.raises(MetadataError, match=r"not an OME-Zarr 0\.6 scene"):
        read_scene({"ome": {"version": "0.6", "multiscales": []}}, where="s")
    with pytest.raises(MetadataError, match="transformation 0 input must name a coordinate"):
        read_scene({"ome": {"scene": {"coordinateTransformations": [{"type": "identity"}]}}},
                   where="s")  # fmt: skip


CZYX = (("c", False), ("z", True), ("y", True), ("x", True))
ZYX = CZYX[1:]


def test_channel_axes_ride_along_and_only_space_is_composed() -> None:
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[0.8, -0.6], [0.6, 0.8]]
    rotation[:3, 3] = [1, 2, 3]
    # (c, z, y, x) into (z, y, x): 3 rows of 5, nothing from the channel.
    into_em = spatial_embedding(rotation, CZYX, ZYX)
    assert into_em.shape == (4, 5)
    assert not into_em[:, 0].any()
    # (c, z, y, x) into (c, z, y, x): the channel maps to itself.
    both = spatial_embedding(rotation, CZYX, CZYX)
    np.testing.assert_allclose(both[0], [1, 0, 0, 0, 0])
    lm, em, lm2 = Place("lm", "physical"), Place("em", "physical"), Place("lm2", "physical")
    entries = [transform_json(into_em, lm, em, "lm"), transform_json(both, lm2, lm, "lm2")]
    assert [e["type"] for e in entries] == ["affine", "affine"]
    ome = scene_ome(entries)
    axes = {"lm": (False, True, True, True), "em": (True,) * 3, "lm2": (False, True, True, True)}
    edges = read_scene({"ome": ome}, where="s")
    np.testing.assert_allclose(chain(edges, lm, em, lambda p: axes[p.path], "s"), rotation)
    # Against the arrow: the spatial part is inverted.
    np.testing.assert_allclose(
        chain(edges, em, lm2, lambda p: axes[p.path], "s"),
        np.linalg.inv(rotation) @ np.linalg.inv(rotation),
    )


def test_a_placement_that_moves_space_by_channel_is_refused() -> None:
    shifted = spatial_embedding(np.eye(4), CZYX, ZYX)
    shifted[2, 0] = 5.0  # y moves with the channel index
    entry = transform_json(shifted, Place("lm", "p"), Place("em", "p"), "lm")
    edges = read_scene({"ome": scene_ome([entry])}, where="s")
    spatial = {"lm": (False, True, True, True), "em": (True,) * 3}
    with pytest.raises(MetadataError, match="non-spatial axis"):
        chain(edges, Place("lm", "p"), Place("em", "p"), lambda p: spatial[p.path], "s")
