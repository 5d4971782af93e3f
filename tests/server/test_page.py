"""The browser page in real headless Chromium (Debian's ``chromium``), driven by Playwright.

Skipped, with the reason, where Chromium or Playwright is missing; CI installs both and sets
CELLVOL_REQUIRE_BROWSER=1 so that there the test fails instead of skipping.
"""

import io
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from browser_helpers import CHROMIUM, FLAGS, launch, panels
from PIL import Image


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


def _renders(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.renders)"))


def test_three_planes_render_and_the_overlay_toggles(running, browser, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{running.url}view/tomo")
    page.wait_for_function(
        "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 3", timeout=20_000
    )
    page.screenshot(path=str(tmp_path / "viewer.png"))
    before = panels(page)
    assert len(before) == 3
    for name, shot in zip(("XY", "XZ", "YZ"), before, strict=True):
        grey = shot.mean(axis=-1)
        assert grey.std() > 10, f"the {name} plane looks blank"
        assert (grey > 20).mean() > 0.1, f"the {name} plane shows almost no image data"
    # Turning the label overlay off redraws every plane without the segment colours.
    count = _renders(page)
    page.click("#overlay")
    page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}", timeout=20_000)
    after = panels(page)
    for name, (one, other) in zip(("XY", "XZ", "YZ"), zip(before, after, strict=True), strict=True):
        changed = (one != other).any(axis=-1).mean()
        assert changed > 0.01, f"the overlay toggle did not change the {name} plane"
    # Clicking a voxel of segment 2 shows its annotations, with links.
    xy = page.query_selector(".panel[data-axis='z'] canvas")
    page.select_option("#labels", "cells")
    box = xy.bounding_box()
    assert box is not None
    page.evaluate(
        """() => {
            state.cursor = [10 * 8, 60 * 4, 80 * 4];
            refresh();
            showSegment();
        }"""
    )
    page.wait_for_selector("#segment-body a", timeout=20_000)
    links = page.eval_on_selector_all("#segment-body a", "as => as.map(a => a.href)")
    assert "https://amigo.geneontology.org/amigo/term/GO:0005739" in links
    assert "mitochondrion" in page.inner_text("#segment-body")
    # Selected in 2-D, the segment is selected in the list and the 3-D view too.
    page.wait_for_selector("#segment-list li.selected[data-id='2']", timeout=20_000)
    assert page.evaluate("view3d.selected") == 2
    assert "zarr3%3A%2F%2F" in page.get_attribute("#neuroglancer", "href")
    # Zooming out far enough switches the planes to a coarser level.
    count = _renders(page)
    for _ in range(15):  # 1.25 per step: level 2's 16 nm voxels need 18x the start's scale
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 120)
    page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}", timeout=20_000)
    page.wait_for_function(
        "document.querySelector('.panel[data-axis=\"z\"] .where').textContent.includes('level 2')",
        timeout=20_000,
    )
    assert errors == []
    page.close()


# -- the 3-D view ----------------------------------------------------------------------------


def _open(browser: Any, url: str, width: int = 1400, height: int = 900) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function(
        "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 3", timeout=20_000
    )
    return page, errors


def _shot(element: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB")).astype(int)


def _frames(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.frames3d)"))


def _redrawn(page: Any, action: Any) -> None:
    """Do ``action`` and wait until the 3-D view has drawn a frame after it."""
    count = _frames(page)
    action()
    page.wait_for_function(f"Number(document.body.dataset.frames3d) > {count}", timeout=20_000)


def _changed(one: np.ndarray, other: np.ndarray) -> float:
    """The fraction of pixels that differ visibly between two pictures."""
    return float((np.abs(one - other).max(axis=-1) > 24).mean())


def test_3d_view_shows_the_planes_and_segment_surfaces(running, browser) -> None:
    page, errors = _open(browser, f"{running.url}view/tomo")
    page.wait_for_selector("#view3d[data-ready='1'][data-meshes='loaded']", timeout=30_000)
    assert page.get_attribute("#view3d", "data-surfaces") == "2"  # both segments of the labels
    canvas = page.query_selector("#view3d canvas")
    full = _shot(canvas)
    _redrawn(page, lambda: page.click("#surfaces3d"))
    planes_only = _shot(canvas)
    _redrawn(page, lambda: page.click("#planes3d"))
    empty = _shot(canvas)  # the bounding box alone
    surfaces = _changed(full, planes_only)
    assert surfaces > 0.01, f"hiding the surfaces changed {surfaces:.1%} of the 3-D view"
    # The planes carry the image: grey levels where the empty scene is black.
    grey = planes_only.mean(axis=-1)
    shown = (grey > 20) & (empty.mean(axis=-1) < 5)
    assert shown.mean() > 0.1, f"the planes cover only {shown.mean():.1%} of the 3-D view"
    assert grey[shown].std() > 10, "the planes in 3-D show no image detail"
    # Rotating (a mouse drag) changes the picture.
    _redrawn(page, lambda: page.click("#planes3d"))
    _redrawn(page, lambda: page.click("#surfaces3d"))
    assert _changed(_shot(canvas), full) < 0.001  # both back: the same picture as before
    box = canvas.bounding_box()
    assert box is not None
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*middle)
    page.mouse.down()
    page.mouse.move(middle[0] + 80, middle[1] + 30, steps=5)
    page.mouse.up()
    rotated = _shot(canvas)
    assert _changed(full, rotated) > 0.05, "dragging did not rotate the 3-D view"
    # A click on a surface selects its segment: its annotations show, the list marks it and
    # the planes outline it.
    visible = np.abs(rotated - _surfaces_hidden(page, canvas)).max(axis=-1) > 24
    # A pixel well inside a surface, not on an anti-aliased edge.
    inside = visible.copy()
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            inside &= np.roll(visible, (dy, dx), axis=(0, 1))
    rows, cols = np.nonzero(inside)
    assert rows.size, "no surface is visible after the rotation"
    pick = len(rows) // 2
    page.mouse.click(box["x"] + cols[pick], box["y"] + rows[pick])
    page.wait_for_selector("#segment-list li.selected", timeout=20_000)
    chosen = int(page.get_attribute("#segment-list li.selected", "data-id"))
    assert chosen in (1, 2)
    assert page.evaluate("state.selected.id") == chosen
    assert f"segment ID\n{chosen}" in page.inner_text("#segment-body")
    assert errors == []
    page.close()


def _surfaces_hidden(page: Any, canvas: Any) -> np.ndarray:
    """The 3-D view without its surfaces (then shown again)."""
    _redrawn(page, lambda: page.click("#surfaces3d"))
    shot = _shot(canvas)
    _redrawn(page, lambda: page.click("#surfaces3d"))
    return shot


def test_3d_view_says_so_without_webgl(running, browser) -> None:
    launched = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*FLAGS, "--disable-3d-apis"]
    )
    try:
        page, errors = _open(launched, f"{running.url}view/tomo")  # the planes still render
        message = page.query_selector("#view3d .message")
        assert message is not None
        assert message.is_visible()
        assert "WebGL" in message.inner_text()
        assert page.get_attribute("#view3d", "data-webgl") == "0"
        assert errors == []
    finally:
        launched.close()


# -- the segment list, the scale bars, the cursor --------------------------------------------


def test_segment_list_jumps_to_the_centroid_and_shows_annotations(running, browser) -> None:
    page, errors = _open(browser, f"{running.url}view/tomo")
    page.wait_for_selector("#segment-list li", timeout=20_000)
    assert page.eval_on_selector_all("#segment-list li", "rows => rows.length") == 2
    page.fill("#segment-search", "GO:0005739")
    page.wait_for_function(
        "document.querySelectorAll('#segment-list li').length === 1", timeout=20_000
    )
    row = page.inner_text("#segment-list li")
    for part in ("mitochondrion", "ID 2", "21,000 voxels"):
        assert part in row
    page.click("#segment-list li")
    page.wait_for_selector("#segment-body a", timeout=20_000)
    links = page.eval_on_selector_all("#segment-body a", "as => as.map(a => a.href)")
    assert "https://amigo.geneontology.org/amigo/term/GO:0005739" in links
    assert "https://www.uniprot.org/uniprotkb/P69905/entry" in links
    assert "mitochondrion" in page.inner_text("#segment-body")
    # The crosshair is at segment 2's centroid, in nm (voxels of 8 x 4 x 4 nm) ...
    centroid = np.argwhere(running.labels == 2).mean(axis=0)
    expected_nm = centroid * np.array([8.0, 4.0, 4.0])
    page.wait_for_function(
        f"JSON.parse(document.getElementById('cursor').dataset.position)[2] === {expected_nm[2]}",
        timeout=20_000,
    )
    position = page.evaluate("JSON.parse(document.getElementById('cursor').dataset.position)")
    assert page.get_attribute("#cursor", "data-unit") == "nm"
    np.testing.assert_allclose(position, expected_nm)
    readout = page.inner_text("#cursor")
    for axis, value in zip("zyx", expected_nm, strict=True):
        assert f"{axis} {value:.1f} nm" in readout
    # ... and each plane is the one through it.
    planes = np.floor(centroid + 0.5).astype(int)
    for axis, index in zip("zyx", planes, strict=True):
        page.wait_for_function(
            f"document.querySelector('.panel[data-axis=\"{axis}\"] .where')"
            f".textContent.startsWith('{axis} = {index} ')",
            timeout=20_000,
        )
        slider = page.query_selector(f".panel[data-axis='{axis}'] .plane")
        assert slider is not None
        assert slider.input_value() == str(index)
    assert page.evaluate("state.selected.id") == 2
    assert page.get_attribute("#segment-list li.selected", "data-id") == "2"
    assert errors == []
    page.close()


def test_scale_bars_and_cursor_readout_in_nm(running, browser) -> None:
    page, errors = _open(browser, f"{running.url}view/tomo")
    panel = page.query_selector(".panel[data-axis='z']")
    assert panel is not None
    canvas = panel.query_selector("canvas")
    label = panel.get_attribute("data-scalebar")
    assert label is not None
    match = re.fullmatch(r"(\d+(?:\.\d+)?) nm", label)
    assert match, f"the XY scale bar reads {label!r}"
    bar_nm = float(match.group(1))
    # The canvas's own pixels (a fractional box's screenshot takes in a column of the page).
    width = int(page.evaluate("panels[0].canvas.width"))
    shot = _shot(canvas)[:, :width]
    # The plane's width on screen: its 128 columns of 4 nm, where the panel is not black (on a
    # row clear of the crosshair and the bar).
    row = shot[shot.shape[0] // 8]
    columns = np.flatnonzero(row.max(axis=-1) > 20)
    nm_per_pixel = 128 * 4.0 / (columns[-1] - columns[0] + 1)
    # The bar itself: the longest run of white pixels near the bottom-left corner.
    white = (shot[-40:, : shot.shape[1] // 2] >= 250).all(axis=-1)
    bar_pixels = int(white.sum(axis=1).max())
    assert abs(bar_pixels * nm_per_pixel - bar_nm) <= 2 * nm_per_pixel, (
        f"a bar of {bar_pixels} px at {nm_per_pixel:.3f} nm/px labelled {label}"
    )
    assert int(panel.get_attribute("data-scalebar-pixels") or 0) == bar_pixels
    # The readout starts at the middle of the volume, in nm: (n - 1) / 2 voxels.
    readout = page.inner_text("#cursor")
    for axis, size, voxel in zip("zyx", running.data.shape, (8, 4, 4), strict=True):
        assert f"{axis} {(size - 1) / 2 * voxel:.1f} nm" in readout
    # The window controls are labelled and show their numbers.
    assert "low" in page.inner_text("#window")
    assert "high" in page.inner_text("#window")
    low = float(page.inner_text("#low-value"))
    high = float(page.inner_text("#high-value"))
    assert low < high
    assert errors == []
    page.close()


def test_virtual_time_screenshot_shows_every_plane(running, browser, tmp_path) -> None:
    """A plain headless screenshot, as a script would take one: no plane may be left black."""
    shot = tmp_path / "virtual-time.png"
    command = [
        CHROMIUM,
        "--headless",
        *FLAGS,
        f"--screenshot={shot}",
        "--window-size=1400,900",
        "--virtual-time-budget=10000",
        f"{running.url}view/tomo",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=tmp_path)
    picture = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert picture.shape[:2] == (900, 1400)
    # Where the planes are on a page of that size: from the same page in Playwright.
    page, _ = _open(browser, f"{running.url}view/tomo", 1400, 900)
    for name, canvas in zip(
        ("XY", "XZ", "YZ"), page.query_selector_all(".panel canvas"), strict=True
    ):
        box = canvas.bounding_box()
        assert box is not None
        top, left = int(box["y"]), int(box["x"])
        region = picture[top : top + int(box["height"]), left : left + int(box["width"])]
        grey = region.mean(axis=-1)
        assert grey.std() > 10, f"the {name} plane is blank in the virtual-time screenshot"
        assert (grey > 20).mean() > 0.1, f"the {name} plane shows almost no image data"
    page.close()


def test_3d_view_skips_an_over_budget_mesh_and_a_broken_one_but_draws_the_rest(
    browser, tmp_path
) -> None:
    import json

    import cellvol
    from cellvol.server import Server

    labels = np.zeros((16, 48, 48), np.uint8)
    labels[1:15, 2:46, 2:30] = 1  # the largest surface, first in ID order
    labels[4:10, 36:44, 36:44] = 2
    labels[11:15, 36:44, 36:44] = 3
    image = tmp_path / "small.ome.zarr"
    cellvol.write_pyramid(np.full(labels.shape, 100, np.uint8), image, (4, 4, 4), n_levels=1)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    cellvol.compute_meshes(image, "cells", triangle_budget=100_000)
    index = json.loads((image / "labels/cells/meshes/index.json").read_text())
    triangles = {entry["id"]: entry["triangles"] for entry in index["segments"]}
    budget = triangles[2] + triangles[3]
    assert triangles[1] > budget  # over the view's budget on its own; 2 and 3 fit together
    # Segment 3's mesh garbled: its header promises more than its bytes hold.
    broken = image / "labels/cells/meshes/3.bin"
    broken.write_bytes(broken.read_bytes()[:-12])
    with Server([str(image)]) as server:
        page, errors = _open(browser, f"{server.url}view/small?max_triangles={budget}")
        page.wait_for_selector("#view3d[data-ready='1'][data-meshes='loaded']", timeout=30_000)
        assert page.get_attribute("#view3d", "data-surfaces") == "1"  # segment 2
        assert page.get_attribute("#view3d", "data-failed") == "1"  # segment 3
        caption = page.inner_text("#view3d .where")
        assert "1 more left out" in caption
        assert "1 could not be read" in caption
        assert errors == []
        page.close()
