"""Which OME-Zarr neuroglancer reads, and the states cellvol gives it, in the real viewer.

neuroglancer (the release ``tools/neuroglancer_bundle.py`` pins, built from the npm registry
and cached) runs in headless Chromium against ``cellvol serve`` on 127.0.0.1. "Reads" is
decided by what neuroglancer itself reports: the layer's data source loaded without an error,
the canvas shows pixels that the same viewer with its layers hidden does not, and the global
dimensions' scales are the image's voxel size.

The bare group tests record the facts of that release (0.5 reads; 0.6 is refused with its
message; the channels' ``omero`` under ``ome`` is not seen): a release that starts reading 0.6
fails ``test_neuroglancer_refuses_an_ome_zarr_06_group``, and docs/format.md's table is due.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_helpers import launch
from neuroglancer_helpers import Look, app_folder, look
from server_helpers import quadrant_channels, write_quadrant_channels
from support import write_ome_zarr_04

import cellvol
from cellvol.server import Server

pytestmark = pytest.mark.slow

VOXEL = (8.0, 4.0, 4.0)
SHAPE = (32, 96, 128)
BOUNDS = {axis: (-0.5, n - 0.5) for axis, n in zip("zyx", SHAPE, strict=True)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture(scope="module")
def app() -> Path:
    return app_folder()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server: an image as 0.5 and 0.6, a 2-channel one as 0.5 and 0.6, and with time;
    a zarr v2 OME-Zarr 0.4 image written as other tools write it."""
    root = tmp_path_factory.mktemp("neuroglancer")
    z, y, x = np.mgrid[tuple(slice(0, n) for n in SHAPE)]
    data = (1000 + 300 * np.sin(x / 9.0) * np.cos(y / 11.0) + 10 * z).astype(np.uint16)
    channels = quadrant_channels()
    paths = []
    for version in ("0.5", "0.6"):
        tag = version.replace(".", "")
        plain = root / f"plain{tag}.ome.zarr"
        cellvol.write_pyramid(data, plain, VOXEL, n_levels=2, ome_version=version)
        two = root / f"two{tag}.ome.zarr"
        write_quadrant_channels(two, version)
        paths += [str(plain), str(two)]
    # Two time points, the second dark: the layers must show time point 0.
    timed = root / "time06.ome.zarr"
    write_quadrant_channels(
        timed, "0.6", np.stack([channels, np.zeros_like(channels)]), axes="tczyx"
    )
    paths.append(str(timed))
    write_ome_zarr_04(root / "v04", data[:16, :16, :16], [0.5, 0.25, 0.25])
    paths.append(str(root / "v04"))
    with Server(paths) as server:
        yield server.url


def _app_url(app: Path, http_server: Callable[[Path], str]) -> str:
    return http_server(app)


def _catalog_state(url: str, name: str) -> dict[str, Any]:
    """The state of the neuroglancer link the catalog gives for volume ``name``."""
    with urllib.request.urlopen(f"{url}catalog", timeout=60) as reply:
        catalog = json.loads(reply.read())
    (entry,) = [v for v in catalog["volumes"] if v["name"] == name]
    return dict(json.loads(urllib.parse.unquote(entry["neuroglancer"].split("#!", 1)[1])))


def _bare(url: str, name: str) -> dict[str, Any]:
    """The plainest state: one layer on the image's OME group, as a user would type it."""
    return {"layers": [{"type": "image", "name": name, "source": f"zarr3://{url}data/{name}/"}]}


def _box(bounds: dict[str, tuple[float, float]]) -> list[float]:
    return [v for axis in "zyx" for v in bounds[axis]]


def _loaded(seen: Look, scales_nm: tuple[float, ...]) -> None:
    assert all(not e for e in seen.errors().values()), seen.errors()
    assert not seen.console, seen.console
    assert seen.drawn(), "neuroglancer drew nothing of its layers"
    assert seen.scales_nm() == pytest.approx(dict(zip("zyx", scales_nm, strict=True)))


def test_neuroglancer_reads_an_ome_zarr_05_group(
    images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    seen = look(browser, _app_url(app, http_server), _bare(images, "plain05"))
    _loaded(seen, VOXEL)
    assert seen.source("plain05")["outputNames"] == ["z", "y", "x"]
    # Its OME reader puts voxel centres on whole numbers: n voxels span [-0.5, n - 0.5).
    assert _box(seen.bounds("plain05")) == pytest.approx(_box(BOUNDS))


def test_neuroglancer_refuses_an_ome_zarr_06_group(
    images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    seen = look(browser, _app_url(app, http_server), _bare(images, "plain06"))
    # The fact of the pinned release; a release that reads 0.6 makes this fail: update
    # docs/format.md's table, and consider 0.6 as the default.
    assert seen.errors() == {"plain06": ['OME multiscale metadata version "0.6" is not supported']}
    assert not seen.drawn()


@pytest.mark.parametrize("name", ["plain05", "plain06"])
def test_the_catalog_link_opens_05_and_06_images(
    name: str, images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    state = _catalog_state(images, name)
    source = state["layers"][0]["source"]["url"]
    # 0.6: the level-0 array, which neuroglancer reads as plain zarr v3, placed by the state.
    assert source.endswith(f"/data/{name}/" if name == "plain05" else f"/data/{name}/0/")
    seen = look(browser, _app_url(app, http_server), state)
    _loaded(seen, VOXEL)
    # Where neuroglancer's own OME reader puts the 0.5 group's voxels, to the half voxel.
    assert _box(seen.bounds(name)) == pytest.approx(_box(BOUNDS))


def test_the_catalog_link_opens_a_04_image(
    images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    state = _catalog_state(images, "v04")
    assert state["layers"][0]["source"]["url"] == f"zarr2://{images}data/v04/"
    seen = look(browser, _app_url(app, http_server), state)
    # Its zarr v2 source first asks whether the URL is an array; a group answers 404 there.
    assert seen.console == [f"HTTP 404 {images}data/v04/.zarray"]
    seen.console.clear()
    # 0.5 x 0.25 x 0.25 micrometres, times the multiscale-wide scale (1, 2, 2).
    _loaded(seen, (500.0, 500.0, 500.0))
    assert _box(seen.bounds("v04")) == pytest.approx([-0.5, 15.5] * 3)


def test_neuroglancer_does_not_see_05_channel_metadata(
    images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    seen = look(browser, _app_url(app, http_server), _bare(images, "two05"))
    _loaded(seen, (100.0, 50.0, 50.0))
    source = seen.source("two05")
    assert source["outputNames"][0] == "c'"  # the channel axis, local to the layer
    # It reads ``omero`` at the top of the attributes (0.4), not under ``ome`` (0.5): no
    # labels or colours from the file; cellvol's states carry them in each layer.
    assert source["channels"] is None


@pytest.mark.parametrize("name", ["two05", "two06", "time06"])
def test_each_channel_is_a_layer_in_its_colour(
    name: str, images: str, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    state = _catalog_state(images, name)
    assert [la["name"] for la in state["layers"]] == [f"{name} membrane", f"{name} blobs"]
    state["layout"] = "xy"  # one panel: the quadrants of an XY plane are the canvas's
    seen = look(browser, _app_url(app, http_server), state)
    _loaded(seen, (100.0, 50.0, 50.0))
    pixels = seen.shown[seen.changed()].astype(int)
    red, green, blue = pixels.T
    # membrane (green) alone, blobs (magenta) alone, both (white): each fills a quadrant of
    # 32 x 32 voxels, drawn at neuroglancer's default zoom of about a pixel a voxel.
    counts = {
        "green": np.sum((green > 200) & (red < 60) & (blue < 60)),
        "magenta": np.sum((red > 200) & (blue > 200) & (green < 60)),
        "white": np.sum((red > 200) & (green > 200) & (blue > 200)),
    }
    assert all(count > 600 for count in counts.values()), counts


def test_the_scene_state_places_the_lm_channels_over_the_em(
    clem_channels: Any, app: Path, browser: Any, http_server: Callable[[Path], str]
) -> None:
    url, pair, _ = clem_channels
    with urllib.request.urlopen(f"{url}neuroglancer/cell", timeout=60) as reply:
        state = json.loads(reply.read())
    names = [la["name"] for la in state["layers"]]
    assert names == ["em", "lm membranes", "lm blobs"]
    # Hiding the LM's layers changes the canvas: the channels are drawn over the EM.
    seen = look(browser, _app_url(app, http_server), state, hide=names[1:])
    _loaded(seen, tuple(pair.em_voxel))
    for layer in state["layers"][1:]:
        source = seen.source(layer["name"])
        assert source["outputNames"] == ["c'", "z", "y", "x"]
        # What neuroglancer applies (column-major, homogeneous) is the state's matrix.
        applied = np.asarray(source["transform"]).reshape(5, 5).T[:4]
        assert np.allclose(applied, layer["source"]["transform"]["matrix"])
