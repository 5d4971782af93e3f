"""Scenes with a two-channel LM: link it, validate it, resample it channel by channel.

The LM of the CLEM pair (``clem_helpers``) has a membrane channel (the EM's edges) and a blob
channel (the fiducial beads). The affine places space only: resampled into EM space, every
bead of the blob channel lands where it was put in the EM, and the membrane channel follows
the EM's edges.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clem_helpers import (
    FIDUCIAL_RADIUS,
    PSF_SIGMA,
    ClemPair,
    make_pair,
    membranes,
    synthetic_em,
    weighted_centroid,
)

import cellvol
from cellvol.errors import InvalidInputError


@pytest.fixture(scope="module")
def pair() -> ClemPair:
    return make_pair(*synthetic_em())


@pytest.fixture(scope="module")
def scene(pair: ClemPair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clem2")
    em, lm = root / "em.ome.zarr", root / "lm.ome.zarr"
    cellvol.write_pyramid(pair.em, em, tuple(pair.em_voxel), ome_version="0.6", n_levels=2)
    cellvol.write_pyramid(
        pair.lm_channels,
        lm,
        tuple(pair.lm_voxel),
        ome_version="0.6",
        n_levels=2,
        axes="czyx",
        channel_names=["membranes", "blobs"],
    )
    path = root / "cell.scene.zarr"
    cellvol.link(path, {"em": em, "lm": lm}, {"lm": pair.affine})
    return path


def test_the_scene_validates_and_its_affine_leaves_the_channel_alone(
    scene: Path, pair: ClemPair
) -> None:
    found = cellvol.validate(scene)
    assert found.valid, found.message
    document = json.loads((scene / "zarr.json").read_text())["attributes"]
    (transform,) = document["ome"]["scene"]["coordinateTransformations"]
    # From (c, z, y, x) to (z, y, x): three rows of five, the channel's column zero.
    assert transform["type"] == "affine"
    rows = np.asarray(transform["affine"])
    assert rows.shape == (3, 5)
    assert np.all(rows[:, 0] == 0)
    np.testing.assert_allclose(rows[:, 1:], pair.affine[:3])
    opened = cellvol.open_scene(scene)
    np.testing.assert_allclose(opened.transform("lm", "em"), pair.affine, rtol=1e-12)
    np.testing.assert_allclose(opened.transform("em", "lm"), np.linalg.inv(pair.affine))


def test_the_scene_loads_in_ome_zarr_models(scene: Path) -> None:
    v06 = pytest.importorskip("ome_zarr_models.v06.scene")
    document = json.loads((scene / "zarr.json").read_text())["attributes"]
    model = v06.BaseSceneAttrs.model_validate(document["ome"])
    (transform,) = model.scene.coordinateTransformations
    assert transform.input.path == "../lm.ome.zarr"


def test_each_channel_is_resampled_the_same_way(scene: Path, pair: ClemPair) -> None:
    opened = cellvol.open_scene(scene)
    both = opened.resample("lm", like="em")
    assert both.shape == (2, *pair.em.shape)
    values = np.asarray(both.compute())
    # Blobs: every bead within half an LM voxel of where it was put in the EM.
    found = [weighted_centroid(values[1], pair.em_voxel, f, 2.5 * FIDUCIAL_RADIUS)
             for f in pair.fiducials_em]  # fmt: skip
    misses = np.abs(np.asarray(found) - pair.fiducials_em)
    assert np.all(misses < pair.lm_voxel / 2), misses
    # Membranes: the resampled channel follows the EM's edges as the LM's PSF blurs them.
    from scipy import ndimage

    em, voxel = synthetic_em()
    edges = ndimage.gaussian_filter(membranes(em), PSF_SIGMA / voxel)
    inside = values[0] != 0
    assert inside.mean() > 0.5
    assert np.corrcoef(values[0][inside], edges[inside])[0, 1] > 0.8
    # The blob channel is not the membrane one: it does not follow the edges.
    assert np.corrcoef(values[1][inside], edges[inside])[0, 1] < 0.3
    # One channel, by name or index: (z, y, x), the same values.
    blobs = opened.resample("lm", like="em", channel="blobs")
    assert blobs.shape == pair.em.shape
    np.testing.assert_array_equal(np.asarray(blobs.compute()), values[1])
    np.testing.assert_array_equal(
        np.asarray(opened.resample("lm", like="em", channel=0).compute()), values[0]
    )


def test_the_em_goes_onto_the_lm_grid(scene: Path, pair: ClemPair) -> None:
    opened = cellvol.open_scene(scene)
    em_on_lm = opened.resample("em", like="lm", level=1)
    assert em_on_lm.shape == opened["lm"].channel(0).level(1).shape


def test_unknown_channels_are_refused(scene: Path) -> None:
    opened = cellvol.open_scene(scene)
    with pytest.raises(InvalidInputError, match="dapi"):
        opened.resample("lm", like="em", channel="dapi")
    with pytest.raises(InvalidInputError):
        opened.resample("em", like="lm", channel=0)


def test_time_and_channel_axes_link_to_a_channel_image(tmp_path: Path) -> None:
    # (t, c, z, y, x) placed into (c, z, y, x): the channel maps to itself, time to nothing.
    rng = np.random.default_rng(0)
    movie = rng.random((2, 3, 8, 16, 16)).astype(np.float32)
    still = rng.random((3, 8, 16, 16)).astype(np.float32)
    voxel = (1.0, 1.0, 1.0)
    cellvol.write_pyramid(movie, tmp_path / "t.zarr", voxel, ome_version="0.6", n_levels=1,
                          axes="tczyx")  # fmt: skip
    cellvol.write_pyramid(still, tmp_path / "c.zarr", voxel, ome_version="0.6", n_levels=1,
                          axes="czyx")  # fmt: skip
    shift = {"translation": [0.0, 2.0, 0.0]}
    cellvol.link(tmp_path / "s.zarr", {"c": tmp_path / "c.zarr", "t": tmp_path / "t.zarr"},
                 {"t": shift})  # fmt: skip
    assert cellvol.validate(tmp_path / "s.zarr").valid
    document = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    (transform,) = document["ome"]["scene"]["coordinateTransformations"]
    rows = np.asarray(transform["affine"])
    assert rows.shape == (4, 6)
    np.testing.assert_array_equal(rows[0], [0, 1, 0, 0, 0, 0])  # c from c, not from t
    resampled = np.asarray(
        cellvol.open_scene(tmp_path / "s.zarr").resample("t", like="c", interpolation="nearest")
    )
    assert resampled.shape == still.shape
    # Time point 0 of every channel, shifted 2 along y.
    np.testing.assert_array_equal(resampled[:, :, 2:], movie[0, :, :, :-2])
