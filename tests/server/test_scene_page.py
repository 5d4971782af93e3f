"""The /view page of a scene in real headless Chromium: the LM over the EM in all three planes.

The EM is shown dim (window 0-4 of its 0-1 range: grey up to 64) and the LM in green (window
0-24: the beads, about 12, stay below 255 added to the EM), so a
pixel's green minus red is the LM overlay alone (the crosshair is yellow, the scale bar white:
both have green = red). The fiducial beads are in the LM only; where each shows on the
screen, with the crosshair on it, is checked against its true EM position.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from browser_helpers import launch, panels
from PIL import Image

NAMES = ("XY", "XZ", "YZ")
SETTLED = """() => panels.every((p) => p.element.dataset.ready === "1"
    && p.element.dataset.overlay === String(p.sequence))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


def _overlay(shot: np.ndarray) -> np.ndarray:
    return np.clip(shot[..., 1].astype(int) - shot[..., 0].astype(int), 0, None)


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}view/cell")
    page.wait_for_function(SETTLED, timeout=30_000)
    page.evaluate(
        """() => {
            state.low = 0; state.high = 4;
            overlay.placed[0].channels[0].low = 0;
            overlay.placed[0].channels[0].high = 24;
            refresh();
        }"""
    )
    page.wait_for_function(SETTLED, timeout=30_000)
    return page, errors


def _renders(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.renders)"))


def test_the_overlay_shows_in_all_three_planes_and_toggles(clem_scene: Any, browser: Any) -> None:
    url, _, _ = clem_scene
    page, errors = _open(browser, url)
    assert page.inner_text("#title").startswith("cell (em + lm)")
    before = panels(page)
    for name, shot in zip(NAMES, before, strict=True):
        assert _overlay(shot).mean() > 2, f"the {name} plane shows no LM overlay"
        assert shot[..., 2].std() > 3, f"the {name} plane shows no EM"
    count = _renders(page)
    page.click("#overlay-placed")
    page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}", timeout=20_000)
    after = panels(page)
    for name, (on, off) in zip(NAMES, zip(before, after, strict=True), strict=True):
        assert _overlay(off).max() <= 2, f"the {name} plane keeps its overlay when toggled off"
        changed = (on != off).any(axis=-1).mean()
        assert changed > 0.05, f"the overlay toggle did not change the {name} plane"
    # Back on at half the opacity: half the light; the channel's opacity control at 0: none.
    page.click("#overlay-placed")
    page.wait_for_function(SETTLED, timeout=30_000)
    for opacity, expected in (("0.5", 0.5), ("0", 0.0)):
        page.eval_on_selector(
            ".placed-channel .opacity",
            f"e => {{ e.value = '{opacity}'; e.dispatchEvent(new Event('change')); }}",
        )
        page.wait_for_function(
            "() => panels.every((p) => p.element.dataset.overlay === "
            "(overlay.placed[0].channels[0].opacity > 0 ? String(p.sequence) : 'off'))",
            timeout=30_000,
        )
        count = _renders(page)
        page.evaluate("() => panels.forEach(draw)")
        page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}")
        for name, shot, full in zip(NAMES, panels(page), before, strict=True):
            seen, bright = _overlay(shot), _overlay(full) > 40
            ratio = seen[bright].mean() / _overlay(full)[bright].mean()
            assert abs(ratio - expected) < 0.08, f"{name}: opacity {opacity} gives {ratio:.2f}"
    assert errors == []
    page.close()


def _bead(overlay: np.ndarray, near: tuple[float, float], reach: float) -> np.ndarray:
    """The centroid (row, col) of the bright blob within ``reach`` pixels of ``near``."""
    r0, c0 = (max(int(v - reach), 0) for v in near)
    box = overlay[r0 : int(near[0] + reach) + 1, c0 : int(near[1] + reach) + 1].astype(float)
    weights = np.clip(box - np.median(box), 0, None)
    weights[weights < 0.5 * weights.max()] = 0
    rows, cols = np.indices(box.shape)
    total = weights.sum()
    return np.array([(rows * weights).sum() / total + r0, (cols * weights).sum() / total + c0])


def test_the_overlay_follows_the_crosshair_as_the_affine_says(
    clem_scene: Any, browser: Any
) -> None:
    url, pair, _ = clem_scene
    page, errors = _open(browser, url)
    for bead in pair.fiducials_em[[0, 3, 5]]:
        page.evaluate(f"() => {{ state.cursor = {list(map(float, bead))}; refresh(); }}")
        page.wait_for_function(SETTLED, timeout=30_000)
        # Where each panel draws the bead's true EM position, and its pixel size (nm).
        where = page.evaluate(
            f"""() => panels.map((p) => {{
                const v = visible(p), s = perPixel(p), b = {list(map(float, bead))};
                return [(b[p.rows] - v.rowMin) / s, (b[p.cols] - v.colMin) / s, s, p.rows, p.cols];
            }})"""
        )
        for name, shot, (row, col, size, rows, cols) in zip(
            NAMES, panels(page), where, strict=True
        ):
            found = _bead(_overlay(shot), (row, col), 100 / size)
            # Within half an LM voxel, plus a screen pixel for drawing.
            allowed = pair.lm_voxel[[rows, cols]] / 2 / size + 1
            miss = np.abs(found - (row, col))
            assert np.all(miss <= allowed), f"{name}: bead at {found}, expected {(row, col)}"
    assert errors == []
    page.close()


def test_channel_toggles_switch_a_channel_off(two_channels: Any, browser: Any) -> None:
    url, _ = two_channels
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}view/cells")
    page.wait_for_function(
        "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 3", timeout=20_000
    )
    labels = page.eval_on_selector_all("#channels label", "ls => ls.map(l => l.textContent)")
    assert [label.strip() for label in labels] == ["membrane", "blobs"]
    xy = page.query_selector(".panel[data-axis='z'] canvas")
    both = np.asarray(Image.open(io.BytesIO(xy.screenshot())).convert("RGB")).astype(int)
    # Magenta (the blobs) has red; green (the membrane) has none: red marks the blobs.
    assert (both[..., 0] > 200).mean() > 0.1
    count = _renders(page)
    page.uncheck("#channels input[data-channel='1']")
    page.wait_for_function(f"Number(document.body.dataset.renders) >= {count + 3}", timeout=20_000)
    membrane = np.asarray(Image.open(io.BytesIO(xy.screenshot())).convert("RGB")).astype(int)
    assert (membrane[..., 0] > 200).mean() < 0.01  # only the yellow crosshair and scale bar
    assert (membrane[..., 1] > 200).mean() > 0.1
    assert errors == []
    page.close()


def test_each_lm_channel_toggles_alone(clem_channels: Any, browser: Any) -> None:
    """Blobs (magenta: red = blue > green) and membranes (green) over a grey EM.

    Grey adds the same to red, green and blue, so red minus green is the blobs' light less the
    membranes', and it is at most 0 once the blob channel is off (the yellow crosshair and the
    white scale bar have red = green).
    """
    url, pair, _ = clem_channels
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}view/cell")
    page.wait_for_function(SETTLED, timeout=30_000)
    rows = page.eval_on_selector_all(".placed-channel", "rs => rs.map(r => r.textContent)")
    assert [r.split("opacity")[0].strip() for r in rows] == ["lm: membranes", "lm: blobs"]
    membranes, blobs = (float(np.percentile(c, 99.5)) for c in pair.lm_channels)
    bead = list(map(float, pair.fiducials_em[0]))
    page.evaluate(
        f"""() => {{
            state.low = 0; state.high = 4; state.cursor = {bead};
            const [m, b] = overlay.placed[0].channels;
            m.low = 0; m.high = {membranes}; b.low = 0; b.high = {blobs};
            refresh();
        }}"""
    )
    page.wait_for_function(SETTLED, timeout=30_000)
    before = [shot.astype(int) for shot in panels(page)]
    for name, shot in zip(NAMES, before, strict=True):
        assert ((shot[..., 0] - shot[..., 1]) > 40).mean() > 0.001, f"{name}: no blob shows"
        assert ((shot[..., 1] - shot[..., 0]) > 20).mean() > 0.05, f"{name}: no membrane shows"
    page.uncheck(".placed-channel[data-channel='1'] .on")
    page.wait_for_function(SETTLED, timeout=30_000)
    after = [shot.astype(int) for shot in panels(page)]
    for name, on, off in zip(NAMES, before, after, strict=True):
        # The magenta is gone everywhere ...
        assert (off[..., 0] - off[..., 1]).max() <= 2, f"{name}: the blobs stay when off"
        # ... and the green stays as it was wherever there were no blobs.
        plain = np.abs(on[..., 0] - on[..., 2]) <= 2
        plain &= on[..., 0] - on[..., 1] <= -20
        assert plain.mean() > 0.05
        green = (off[..., 1] - on[..., 1])[plain]
        assert np.percentile(np.abs(green), 90) <= 3, f"{name}: the membranes changed"
    assert errors == []
    page.close()
