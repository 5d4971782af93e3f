"""Real vizarr in real headless Chromium: what it makes of a cellvol OME-Zarr group.

The app is built from vizarr's source by ``tools/vizarr_bundle.py`` (this module never builds
it: CI cannot fetch the source) and served on 127.0.0.1; :func:`look` opens it with
``?source=`` a group's URL, waits until vizarr either shows its error page or its layer panel,
and reads back what vizarr itself shows: its error message, the channel names and colours in
its panel, and the viewer's canvas as drawn, with the layer hidden, and with each channel
switched off in turn, and the keys it asked the server for.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "vizarr_bundle.py"
SKIP = (
    "vizarr is built from its source (github.com/hms-dbmi/vizarr), which this machine's CI "
    "cannot fetch: run tools/vizarr_bundle.py --source ..."
)

# Per channel row in the layer panel: its label, and the colour of its on/off button (vizarr
# paints the button in the channel's colour).
_CHANNELS = """() => {
  const rows = [];
  for (const label of document.querySelectorAll('.MuiTypography-caption')) {
    const row = label.closest('.MuiGrid-container');
    const next = row && row.nextElementSibling;
    const button = next && next.querySelector('button');
    if (button) rows.push({name: label.textContent, color: getComputedStyle(button).color});
  }
  return rows;
}"""

# The layer panel's outer box (the first absolutely placed ancestor of the layer's eye
# button): hidden while the canvas is photographed, so that only the image is compared.
_PANEL = """(show) => {
  let el = document.querySelector('[aria-label^="toggle-layer-visibility-"]');
  while (el && getComputedStyle(el).position !== 'absolute') el = el.parentElement;
  if (el) el.style.visibility = show ? 'visible' : 'hidden';
}"""

_CLICK_CHANNEL = """(name) => {
  for (const label of document.querySelectorAll('.MuiTypography-caption')) {
    if (label.textContent !== name) continue;
    label.closest('.MuiGrid-container').nextElementSibling.querySelector('button').click();
    return true;
  }
  return false;
}"""


@dataclass
class Look:
    """What vizarr showed for one source."""

    error: str | None  # vizarr's error page text, or None when it opened the source
    channels: list[dict[str, str]] = field(default_factory=list)  # name, CSS colour
    shown: np.ndarray | None = None  # the canvas, RGB, as drawn
    hidden: np.ndarray | None = None  # the same with the layer hidden
    without: dict[str, np.ndarray] = field(default_factory=dict)  # channel switched off
    console: list[str] = field(default_factory=list)  # page errors
    requests: list[str] = field(default_factory=list)  # keys asked for, relative to the source

    def drawn(self) -> bool:
        """Whether the layer puts pixels on the canvas that the hidden layer does not."""
        assert self.shown is not None, self.error
        assert self.hidden is not None, self.error
        return bool(_changed(self.shown, self.hidden).mean() > 0.01)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 8)


def app_folder() -> Path:
    """The built vizarr app: ``$CELLVOL_VIZARR_APP`` or the tool's cache; skips if neither."""
    given = os.environ.get("CELLVOL_VIZARR_APP")
    if given:
        if not (Path(given) / "index.html").is_file():
            pytest.fail(f"CELLVOL_VIZARR_APP={given} has no index.html: not a built vizarr app")
        return Path(given)
    spec = importlib.util.spec_from_file_location("vizarr_bundle", TOOL)
    assert spec is not None, TOOL
    assert spec.loader is not None, TOOL
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    app = tool.built_app()
    if app is None:
        pytest.skip(SKIP)
    return Path(app)


def look(browser: Any, app_url: str, source: str, timeout: float = 60.0) -> Look:
    """Open vizarr at ``app_url`` on ``source``; what it shows once the layer settles."""
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    console: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: requests.append(r.url[len(source) :]) if r.url.startswith(source) else None,
    )
    try:
        page.goto(f"{app_url}/?source={source}")
        page.wait_for_function(
            """() => document.body.innerText.includes('Error: server replied')
                 || document.querySelector('[aria-label^="toggle-layer-visibility-"]')""",
            timeout=timeout * 1000,
        )
        text = page.inner_text("body")
        if "Error: server replied" in text:
            return Look(error=text.strip(), console=console, requests=requests)
        channels = page.evaluate(_CHANNELS)
        shown = _settled_canvas(page, timeout, drawn=True)
        without = {}
        for channel in channels:
            assert page.evaluate(_CLICK_CHANNEL, channel["name"]), channel
            without[channel["name"]] = _settled_canvas(page, timeout)
            page.evaluate(_CLICK_CHANNEL, channel["name"])
        page.click('[aria-label^="toggle-layer-visibility-"]')
        hidden = _settled_canvas(page, timeout)
        return Look(None, channels, shown, hidden, without, console, requests)
    finally:
        page.close()


def _settled_canvas(page: Any, timeout: float, drawn: bool = False) -> np.ndarray:
    """The canvas, without the layer panel over it, once two frames agree.

    With ``drawn``, two black frames do not count as settled (vizarr paints black until its
    tiles arrive); a canvas that stays black is returned at the deadline, for the caller to
    reject.
    """
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        page.wait_for_timeout(500)
        page.evaluate(_PANEL, False)
        canvas = page.query_selector("canvas")
        shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))
        page.evaluate(_PANEL, True)
        black = drawn and int(shot.max()) <= 8
        if previous is not None and np.array_equal(shot, previous) and not black:
            return shot
        if time.monotonic() > deadline:
            return shot
        previous = shot
