"""Tiles and slices of an image with channels: one channel in its colour, or all blended."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from server_helpers import GREEN, MAGENTA


def _get(url: str) -> np.ndarray:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as reply:
        return np.asarray(Image.open(io.BytesIO(reply.read())).convert("RGB")).astype(int)


def _quadrants(image: np.ndarray) -> dict[str, tuple[int, ...]]:
    """The colour in the middle of each quadrant (top-left, top-right, bottom-...)."""
    return {
        "tl": tuple(image[16, 16]),
        "tr": tuple(image[16, 48]),
        "bl": tuple(image[48, 16]),
        "br": tuple(image[48, 48]),
    }


def test_one_channel_shows_in_its_colour(two_channels: tuple[str, np.ndarray]) -> None:
    url, _ = two_channels
    window = "windows=0,1000"
    membrane = _quadrants(_get(f"{url}tiles/cells/0/z/4/0/0.png?channel=0&{window}"))
    assert membrane == {"tl": (0, 255, 0), "bl": (0, 255, 0), "tr": (0, 0, 0), "br": (0, 0, 0)}
    blobs = _quadrants(_get(f"{url}tiles/cells/0/z/4/0/0.png?channel=blobs&{window}"))
    assert blobs == {"tl": (255, 0, 255), "tr": (255, 0, 255), "bl": (0, 0, 0), "br": (0, 0, 0)}


def test_blended_adds_the_channels_colours(two_channels: tuple[str, np.ndarray]) -> None:
    url, _ = two_channels
    both = _quadrants(_get(f"{url}tiles/cells/0/z/4/0/0.png?windows=0,1000;0,1000"))
    # Green + magenta = white where both are bright; each alone elsewhere.
    assert both == {
        "tl": (255, 255, 255),
        "tr": (255, 0, 255),
        "bl": (0, 255, 0),
        "br": (0, 0, 0),
    }


def test_default_blend_uses_each_channels_stored_window(
    two_channels: tuple[str, np.ndarray],
) -> None:
    url, _ = two_channels
    stored = _get(f"{url}slice/cells.png?axis=z&index=4")
    explicit = _get(f"{url}slice/cells.png?axis=z&index=4&channel=membrane,blobs")
    assert stored.shape == (64, 64, 3)
    assert np.array_equal(stored, explicit)
    # The top-left shows both channels: green and magenta components both lit.
    assert stored[16, 16, 1] > 0
    assert stored[16, 16, 0] > 0


def test_the_catalog_lists_channels_and_spatial_levels(
    two_channels: tuple[str, np.ndarray],
) -> None:
    import json
    import urllib.request

    url, _ = two_channels
    with urllib.request.urlopen(f"{url}catalog", timeout=30) as reply:
        entry = json.loads(reply.read())["volumes"][0]
    assert [c["name"] for c in entry["channels"]] == ["membrane", "blobs"]
    assert [c["color"] for c in entry["channels"]] == [GREEN, MAGENTA]
    assert entry["levels"][0]["shape"] == [8, 64, 64]


def test_an_unknown_channel_is_a_clear_error(two_channels: tuple[str, np.ndarray]) -> None:
    import urllib.error
    import urllib.request

    url, _ = two_channels
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}tiles/cells/0/z/4/0/0.png?channel=dna", timeout=30)
    assert caught.value.code == 400
    assert "no channel 'dna'" in caught.value.read().decode()
