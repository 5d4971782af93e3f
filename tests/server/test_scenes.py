"""A served scene (``cellvol serve SCENE``): catalog, raw keys, overlay, neuroglancer state.

The ground truth is the CLEM pair's known affine (``clem_helpers``): the overlay of a plane is
the LM resampled into EM space there (``Scene.resample``, itself checked against the
fiducials), and neuroglancer's transform carries every fiducial to its EM position.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image

import cellvol


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return bytes(reply.read())


def test_the_catalog_lists_the_scene_and_serves_both_images(clem_scene: Any) -> None:
    url, pair, _ = clem_scene
    catalog = json.loads(_get(f"{url}catalog"))
    (scene,) = catalog["scenes"]
    assert scene["name"] == "cell"
    assert scene["reference"] == "em"
    assert scene["placed"] == ["lm"]
    assert np.allclose(scene["transforms"]["lm"], pair.affine)
    assert {v["name"] for v in catalog["volumes"]} == {"cell-em", "cell-lm"}
    for image in ("em", "lm"):
        # Raw keys, as neuroglancer reads them: the image's own zarr.json (OME-Zarr 0.6).
        meta = json.loads(_get(f"{url}data/cell-{image}/zarr.json"))
        assert meta["attributes"]["ome"]["version"] == "0.6"
        assert scene["images"][image] == f"{url}data/cell-{image}/"


@pytest.mark.parametrize(("axis", "index"), [("z", 30), ("y", 100), ("x", 70)])
def test_the_overlay_is_the_lm_resampled_onto_the_em_plane(
    clem_scene: Any, axis: str, index: int
) -> None:
    url, _, path = clem_scene
    picture = _get(f"{url}overlay/cell/lm.png?axis={axis}&index={index}&level=0&windows=0,2")
    green = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB")).astype(int)
    assert not green[..., 0].any()  # one channel, in green
    assert not green[..., 2].any()
    resampled = cellvol.open_scene(path).resample("lm", like="em", level=0)
    key: list[Any] = [slice(None)] * 3
    key["zyx".index(axis)] = index
    expected = np.clip(np.asarray(resampled[tuple(key)].compute()), 0, 2) / 2 * 255
    assert green.shape[:2] == expected.shape
    assert np.abs(green[..., 1] - expected).max() <= 1.01
    assert green[..., 1].std() > 5  # the plane shows structure, not a flat fill


def test_the_overlay_of_a_region_and_a_coarser_level(clem_scene: Any) -> None:
    url, _, _ = clem_scene
    whole = _get(f"{url}overlay/cell/lm.png?axis=z&index=15&level=1&windows=0,12")
    part = _get(
        f"{url}overlay/cell/lm.png?axis=z&index=15&level=1&windows=0,12&rows=10:40&cols=5:60"
    )
    whole_rgb = np.asarray(Image.open(io.BytesIO(whole)))
    part_rgb = np.asarray(Image.open(io.BytesIO(part)))
    assert part_rgb.shape[:2] == (30, 55)
    assert np.array_equal(part_rgb, whole_rgb[10:40, 5:60])
    # Half the opacity: half the light (within rounding).
    faded = _get(f"{url}overlay/cell/lm.png?axis=z&index=15&level=1&windows=0,12&opacities=0.5")
    faded_rgb = np.asarray(Image.open(io.BytesIO(faded))).astype(int)
    assert np.abs(faded_rgb[..., 1] - whole_rgb[..., 1] / 2).max() <= 1


def test_an_image_the_scene_does_not_place_is_refused(clem_scene: Any) -> None:
    url, _, _ = clem_scene
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}overlay/cell/lm.png?axis=z&index=99", timeout=30)
    assert caught.value.code == 404  # outside the reference's 64 planes
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}overlay/cell/em.png?axis=z&index=1", timeout=30)
    assert caught.value.code == 404
    assert "places no image 'em'" in caught.value.read().decode()


def test_the_neuroglancer_state_places_every_fiducial(clem_scene: Any) -> None:
    url, pair, _ = clem_scene
    state = json.loads(_get(f"{url}neuroglancer/cell"))
    em, lm = state["layers"]
    # Both images are OME-Zarr 0.6, whose groups neuroglancer refuses: level 0's arrays.
    assert em["source"]["url"] == f"zarr3://{url}data/cell-em/0/"
    assert lm["source"]["url"] == f"zarr3://{url}data/cell-lm/0/"
    metres = {a: [v * 1e-9, "m"] for a, v in zip("zyx", pair.em_voxel, strict=True)}
    assert state["dimensions"] == {a: metres[a] for a in "xyz"}
    transform = lm["source"]["transform"]
    assert transform["outputDimensions"] == metres
    matrix = np.asarray(transform["matrix"])
    assert matrix.shape == (3, 4)
    # As neuroglancer applies it: to the LM array's coordinates, where level-0 voxel i spans
    # [i, i+1) so its centre (OME's voxel position i) is at i + 0.5 (z, y, x), giving the
    # output dimensions' coordinates: EM nanometres over the EM voxel size.
    voxels = pair.fiducials_lm() / pair.lm_voxel + 0.5
    placed = (matrix[:, :3] @ voxels.T).T + matrix[:, 3]
    assert np.allclose(placed * pair.em_voxel, pair.fiducials_em, atol=1e-6)
    # The page's link carries the same state.
    scene = json.loads(_get(f"{url}catalog"))["scenes"][0]
    fragment = urllib.parse.unquote(scene["neuroglancer"].split("#!", 1)[1])
    assert json.loads(fragment)["layers"][1]["source"]["transform"] == transform


def test_the_view_page_of_a_scene_shows_its_reference(clem_scene: Any) -> None:
    url, _, _ = clem_scene
    page = _get(f"{url}view/cell").decode()
    assert 'data-volume="cell-em"' in page
    assert 'data-scene="cell"' in page
    assert "/static/overlay.js" in page


def test_each_lm_channel_is_overlaid_in_its_colour(clem_channels: Any) -> None:
    url, _, path = clem_channels
    plane = "axis=z&index=30&level=0"
    both = _get(f"{url}overlay/cell/lm.png?{plane}&windows=0,1;0,2")
    rgb = np.asarray(Image.open(io.BytesIO(both)).convert("RGB")).astype(int)
    scene = cellvol.open_scene(path)
    for name, high, columns in (("membranes", 1, [1]), ("blobs", 2, [0, 2])):
        resampled = scene.resample("lm", like="em", channel=name)[30].compute()
        expected = np.clip(np.asarray(resampled), 0, high) / high * 255
        for column in columns:  # membranes in green, blobs in magenta (red and blue)
            assert np.abs(rgb[..., column] - expected).max() <= 1.01, (name, column)
    # Each shows something: the plane passes through beads.
    assert rgb[..., 0].std() > 5
    assert rgb[..., 1].std() > 5
    blobs = _get(f"{url}overlay/cell/lm.png?{plane}&channel=blobs&windows=0,2")
    alone = np.asarray(Image.open(io.BytesIO(blobs)).convert("RGB")).astype(int)
    assert not alone[..., 1].any()
    np.testing.assert_array_equal(alone[..., 0], rgb[..., 0])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}overlay/cell/lm.png?{plane}&channel=dapi", timeout=30)
    assert refused.value.code == 400
    assert "membranes" in refused.value.read().decode()
