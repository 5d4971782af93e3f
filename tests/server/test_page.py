"""The browser page in real headless Chromium (Debian's ``chromium``), driven by Playwright.

Skipped, with the reason, where Chromium or Playwright is missing; CI installs both and sets
CELLVOL_REQUIRE_BROWSER=1 so that there the test fails instead of skipping.
"""

import io
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that keep Chromium from reaching for any host: this machine allows loopback only.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    if os.environ.get("CELLVOL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CELLVOL_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; it drives Chromium)")
    if not os.path.exists(CHROMIUM):
        _missing("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def _panels(page: Any) -> list[np.ndarray]:
    shots = []
    for canvas in page.query_selector_all(".panel canvas"):
        shots.append(np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")))
    return shots


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
    before = _panels(page)
    assert len(before) == 3
    for name, shot in zip(("XY", "XZ", "YZ"), before, strict=True):
        grey = shot.mean(axis=-1)
        assert grey.std() > 10, f"the {name} plane looks blank"
        assert (grey > 20).mean() > 0.1, f"the {name} plane shows almost no image data"
    # Turning the label overlay off redraws every plane without the segment colours.
    count = _renders(page)
    page.click("#overlay")
    page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}", timeout=20_000)
    after = _panels(page)
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
