"""Names taken from a served file (channel labels) show in the page as text, never as markup."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from browser_helpers import launch

HOSTILE = "<img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server for a 2-channel image whose first channel label is an HTML payload."""
    import cellvol
    from cellvol.server import Server

    path = tmp_path_factory.mktemp("hostile") / "cells.ome.zarr"
    data = np.zeros((2, 4, 32, 32), np.uint16)
    cellvol.write_pyramid(data, path, (1, 1, 1), n_levels=1, channel_names=[HOSTILE, "b"])
    with Server([str(path)]) as server:
        yield server.url


def test_a_hostile_channel_name_shows_as_text(hostile: str) -> None:
    browsers = launch()
    browser = next(browsers)
    try:
        page = browser.new_page()
        page.goto(f"{hostile}view/cells")
        page.wait_for_selector("#channels label", timeout=30_000)
        assert HOSTILE in page.inner_text("#channels")
        assert page.evaluate("document.querySelectorAll('#channels img').length") == 0
        assert page.evaluate("window.pwned === undefined")
    finally:
        browsers.close()
