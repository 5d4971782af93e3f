"""Real neuroglancer in real headless Chromium: what it makes of a state pointing at cellvol data.

The app is built from the npm registry by ``tools/neuroglancer_bundle.py`` (cached after the
first run) and served on 127.0.0.1; :func:`look` opens it with a state in the URL fragment,
waits until every layer's data source has loaded or failed, and reads back what neuroglancer
itself reports: each layer's error (the message its layer panel shows), the global coordinate
space (names, scales in metres), each layer's source transform and bounds, and
the rendered canvas with the layers shown and hidden.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from browser_helpers import missing
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "neuroglancer_bundle.py"
#: neuroglancer_bundle.py's exit status when npm or its registry is out of reach.
UNAVAILABLE = 3

# Per layer: its data sources' load state as neuroglancer holds it (undefined while loading).
_PROBE = """() => {
  const v = window.viewer;
  if (!v) return null;
  const layers = v.layerManager.managedLayers.map((m) => {
    const sources = m.layer ? m.layer.dataSources : [];
    return {
      name: m.name,
      sources: sources.map((s) => {
        const st = s.loadState;
        if (st === undefined) return {state: "loading"};
        if (st.error !== undefined) return {state: "error", error: String(st.error.message)};
        const t = st.transform.value;
        return {
          state: "loaded",
          outputNames: Array.from(t.outputSpace.names),
          outputScales: Array.from(t.outputSpace.scales),
          outputUnits: Array.from(t.outputSpace.units),
          inputNames: Array.from(t.inputSpace.names),
          inputScales: Array.from(t.inputSpace.scales),
          rank: t.rank,
          inputLower: Array.from(t.inputSpace.bounds.lowerBounds),
          inputUpper: Array.from(t.inputSpace.bounds.upperBounds),
          transform: Array.from(t.transform),
          channels: st.dataSource.channelMetadata
            ? st.dataSource.channelMetadata.channels.map((c) => c.label ?? null)
            : null,
        };
      }),
      localNames: Array.from(m.localCoordinateSpace.value.names),
    };
  });
  const g = v.coordinateSpace.value;
  return {
    layers,
    global: {
      names: Array.from(g.names),
      scales: Array.from(g.scales),
      units: Array.from(g.units),
    },
  };
}"""


@dataclass
class Look:
    """What neuroglancer reported for one state."""

    layers: list[dict[str, Any]]
    global_space: dict[str, Any]
    shown: np.ndarray  # the viewer's canvas, RGB, with the layers visible
    hidden: np.ndarray  # the same with every layer hidden
    console: list[str] = field(default_factory=list)  # console errors, failed requests

    def errors(self) -> dict[str, list[str]]:
        """Each layer's data-source errors (empty lists: it loaded)."""
        return {
            layer["name"]: [s["error"] for s in layer["sources"] if s["state"] == "error"]
            for layer in self.layers
        }

    def source(self, name: str) -> dict[str, Any]:
        """The first data source of layer ``name``."""
        for layer in self.layers:
            if layer["name"] == name:
                return dict(layer["sources"][0])
        raise KeyError(f"no layer {name!r}; layers: {[la['name'] for la in self.layers]}")

    def scales_nm(self) -> dict[str, float]:
        """The global dimensions' scales, in nanometres (metres as neuroglancer keeps them)."""
        g = self.global_space
        return {
            n: s * 1e9 for n, s, u in zip(g["names"], g["scales"], g["units"], strict=True)
            if u == "m"
        }  # fmt: skip

    def changed(self) -> np.ndarray:
        """The canvas's pixels that differ with the layers shown and hidden (a mask)."""
        return np.asarray(np.abs(self.shown.astype(int) - self.hidden.astype(int)).max(axis=2) > 8)

    def bounds(self, name: str) -> dict[str, tuple[float, float]]:
        """Layer ``name``'s box in the output dimensions: its data's box through its transform.

        For transforms without rotation (a single image's), as the corners map.
        """
        source = self.source(name)
        rank = source["rank"]
        matrix = np.asarray(source["transform"]).reshape(rank + 1, rank + 1).T  # column-major
        low = matrix[:rank, :rank] @ source["inputLower"] + matrix[:rank, rank]
        high = matrix[:rank, :rank] @ source["inputUpper"] + matrix[:rank, rank]
        return {
            n: (float(min(a, b)), float(max(a, b)))
            for n, a, b in zip(source["outputNames"], low, high, strict=True)
        }

    def drawn(self) -> bool:
        """Whether the layers put pixels on the canvas that an empty viewer does not have."""
        return bool(self.changed().mean() > 0.001)


def app_folder() -> Path:
    """The neuroglancer app's folder (built once); skips or fails where it cannot be made."""
    done = subprocess.run(
        [sys.executable, str(TOOL)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode == UNAVAILABLE:
        missing(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"tools/neuroglancer_bundle.py failed:\n{done.stderr}")
    return Path(done.stdout.strip())


def look(
    browser: Any,
    app_url: str,
    state: dict[str, Any],
    timeout: float = 60.0,
    hide: Sequence[str] | None = None,
) -> Look:
    """Open neuroglancer at ``app_url`` with ``state``; what it shows once its layers settle.

    ``hide`` names the layers hidden for :attr:`Look.hidden` (default: all of them).
    """
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    console: list[str] = []
    # Failed requests by URL (the console's own line for them names none); the static
    # server has no favicon, which the browser asks for by itself.
    page.on(
        "response",
        lambda r: (
            console.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.on(
        "console",
        lambda m: (
            console.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    try:
        fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")
        page.goto(f"{app_url}/#!{fragment}")
        page.wait_for_function("() => window.viewer !== undefined", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while True:
            probe = page.evaluate(_PROBE)
            states = [s["state"] for la in probe["layers"] for s in la["sources"]]
            if probe["layers"] and "loading" not in states:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"neuroglancer's layers still loading: {probe['layers']}")
            page.wait_for_timeout(200)
        shown = _settled_canvas(page, timeout)
        page.evaluate(
            """(hide) => window.viewer.layerManager.managedLayers.forEach(
                 (m) => { if (hide === null || hide.includes(m.name)) m.setVisible(false); })""",
            None if hide is None else list(hide),
        )
        hidden = _settled_canvas(page, timeout)
        return Look(probe["layers"], probe["global"], shown, hidden, console)
    finally:
        page.close()


def _settled_canvas(page: Any, timeout: float) -> np.ndarray:
    """The canvas once two screenshots half a second apart agree (its chunks drawn).

    A canvas that still changes when the time is out is a failure, not a result: comparing
    a half-drawn canvas would pass or fail by chance.
    """
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        page.wait_for_timeout(500)
        canvas = page.query_selector("canvas")
        shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))
        if previous is not None and np.array_equal(shot, previous):
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(f"neuroglancer's canvas still changing after {timeout} s")
        previous = shot
