"""Real headless Chromium (Debian's ``chromium``) driven by Playwright, for the page tests.

Skipped, with the reason, where Chromium or Playwright is missing; CI installs both and sets
CELLVOL_REQUIRE_BROWSER=1 so that there the tests fail instead of skipping.
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
# Flags that keep Chromium from reaching for any host (this machine allows loopback only), and
# that give WebGL a software renderer (SwiftShader through ANGLE) where there is no GPU: recent
# Chromium versions offer it to pages only when asked with --enable-unsafe-swiftshader.
FLAGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(reason: str) -> None:
    if os.environ.get("CELLVOL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CELLVOL_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def launch() -> Iterator[Any]:
    """A launched Chromium (a generator: use as a fixture's body)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; it drives Chromium)")
    if not os.path.exists(CHROMIUM):
        missing("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def panels(page: Any) -> list[np.ndarray]:
    shots = []
    for canvas in page.query_selector_all(".panel canvas"):
        shots.append(np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")))
    return shots
