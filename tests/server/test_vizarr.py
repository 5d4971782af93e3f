"""Which OME-Zarr vizarr reads, in the real viewer, from ``cellvol serve``.

vizarr (the commit ``tools/vizarr_bundle.py`` pins, built from its source; skipped where it is
not built) runs in headless Chromium against ``cellvol serve`` on 127.0.0.1, opened on an
image's OME group as ``?source=URL``. "Reads" is decided by what vizarr itself shows: no error
page, a canvas whose pixels change when the layer is hidden, and, for channels, the names and
colours of cellvol's ``omero`` metadata in its panel and on the canvas, each channel's pixels
going dark when that channel is switched off.

The tests record the facts of that commit (0.5 reads, with channels; 0.6 is refused with its
message): a vizarr that starts reading 0.6 fails ``test_vizarr_refuses_ome_zarr_06``, and
docs/format.md's table is due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_helpers import launch
from server_helpers import write_quadrant_channels
from vizarr_helpers import Look, app_folder, look

import cellvol
from cellvol.server import Server

pytestmark = pytest.mark.slow

#: vizarr's message for a 0.6 group: it takes the axes from ``multiscales[0].axes`` (0.6 keeps
#: them in ``coordinateSystems``), falls back to five default axes, and the scales do not match.
REFUSED_06 = (
    'Error: server replied with "Length of scale array was expected to match length of axes." '
    "when loading the resource"
)


@pytest.fixture(scope="module")
def app() -> Path:
    return app_folder()


@pytest.fixture(scope="module")
def browser(app: Path) -> Iterator[Any]:
    yield from launch()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server: a uint8 image and a 2-channel one, each as OME-Zarr 0.5 and 0.6."""
    root = tmp_path_factory.mktemp("vizarr")
    z, y, x = np.mgrid[0:32, 0:96, 0:128]
    plain = (100 + 100 * np.sin(x / 9.0) * np.cos(y / 11.0) + z).astype(np.uint8)
    paths = []
    for version in ("0.5", "0.6"):
        tag = version.replace(".", "")
        paths.append(str(root / f"plain{tag}.ome.zarr"))
        cellvol.write_pyramid(plain, paths[-1], (8.0, 4.0, 4.0), n_levels=2, ome_version=version)
        paths.append(str(root / f"two{tag}.ome.zarr"))
        write_quadrant_channels(Path(paths[-1]), version)
    with Server(paths) as server:
        yield server.url


@pytest.fixture(scope="module")
def looks() -> dict[str, Look]:
    """What vizarr showed per image, shared by the tests of this module."""
    return {}


@pytest.fixture
def seen(
    browser: Any,
    app: Path,
    images: str,
    looks: dict[str, Look],
    http_server: Callable[[Path], str],
) -> Callable[[str], Look]:
    def see(name: str) -> Look:
        if name not in looks:
            looks[name] = look(browser, http_server(app), f"{images}data/{name}/")
        return looks[name]

    return see


def _quadrants(shot: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, tuple[int, ...]]:
    """The colour at the centre of each quadrant of the image drawn in ``box``."""
    top, left, bottom, right = box
    ys = (top + (bottom - top) // 4, top + 3 * (bottom - top) // 4)
    xs = (left + (right - left) // 4, left + 3 * (right - left) // 4)
    return {
        f"{v}{h}": tuple(int(c) for c in shot[y, x])
        for v, y in zip("tb", ys, strict=True)
        for h, x in zip("lr", xs, strict=True)
    }


def _box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box (top, left, bottom, right) of the canvas's non-black pixels."""
    rows, cols = np.nonzero(shot.max(axis=2) > 8)
    assert rows.size, "vizarr drew nothing"
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def test_vizarr_reads_an_ome_zarr_05_image(seen: Callable[[str], Look]) -> None:
    result = seen("plain05")
    assert result.error is None
    assert not result.console, result.console
    assert result.drawn(), "vizarr drew nothing of the layer"
    # Both pyramid levels are opened and read (the coarse one for the contrast limits).
    assert {"0/zarr.json", "1/zarr.json"} <= set(result.requests), result.requests
    assert any(k.startswith("0/c/") for k in result.requests), result.requests
    assert any(k.startswith("1/c/") for k in result.requests), result.requests
    assert result.shown is not None
    top, left, bottom, right = _box(result.shown)
    # The image's 128 x 96 plane keeps its aspect, and its sine pattern is drawn, not a
    # uniform fill.
    assert (right - left) / (bottom - top) == pytest.approx(128 / 96, rel=0.03)
    grey = result.shown[top:bottom, left:right].max(axis=2)
    assert grey.std() > 20, "the drawn image is flat: not the image's pattern"


@pytest.mark.parametrize("name", ["plain06", "two06"])
def test_vizarr_refuses_ome_zarr_06(seen: Callable[[str], Look], name: str) -> None:
    assert seen(name).error == REFUSED_06


def test_vizarr_shows_the_channels_of_an_ome_zarr_05_image(seen: Callable[[str], Look]) -> None:
    result = seen("two05")
    assert result.error is None
    assert not result.console, result.console
    # The names and colours are cellvol's omero ones: vizarr's own defaults for two channels
    # are "channel_0", "channel_1" in magenta, green.
    assert result.channels == [
        {"name": "membrane", "color": "rgb(0, 255, 0)"},
        {"name": "blobs", "color": "rgb(255, 0, 255)"},
    ]
    assert result.shown is not None
    assert result.drawn()
    box = _box(result.shown)
    assert _quadrants(result.shown, box) == {
        "tl": (255, 255, 255),
        "tr": (255, 0, 255),
        "bl": (0, 255, 0),
        "br": (0, 0, 0),
    }
    assert _quadrants(result.without["membrane"], box) == {
        "tl": (255, 0, 255),
        "tr": (255, 0, 255),
        "bl": (0, 0, 0),
        "br": (0, 0, 0),
    }
    assert _quadrants(result.without["blobs"], box) == {
        "tl": (0, 255, 0),
        "tr": (0, 0, 0),
        "bl": (0, 255, 0),
        "br": (0, 0, 0),
    }
