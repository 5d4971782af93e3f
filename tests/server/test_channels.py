"""Choosing an image's channels for a request (``channel=``): names, positions, bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError
from cellvol.ome._display import DEFAULT_CHANNEL_COLORS, Window
from cellvol.server._app import Served
from cellvol.server._channels import Channel, channels_of_image, pick_channels


def _channels(tmp_path: Path, names: list[str]) -> list[Channel]:
    path = tmp_path / "c.ome.zarr"
    data = np.zeros((len(names), 2, 8, 8), np.uint16)
    cellvol.write_pyramid(data, path, (1, 1, 1), n_levels=1, channel_names=names)
    return channels_of_image(cellvol.open(path))


def test_a_repeated_channel_is_refused_not_read_again(tmp_path: Path) -> None:
    channels = _channels(tmp_path, ["a", "b"])
    with pytest.raises(InvalidInputError, match="chosen twice"):
        pick_channels(channels, ",".join(["0"] * 5000), "img")
    with pytest.raises(InvalidInputError, match="chosen twice"):
        pick_channels(channels, "a,0", "img")
    assert [c.name for c in pick_channels(channels, "b,a", "img")] == ["b", "a"]


def test_a_non_ascii_digit_is_a_clear_error(tmp_path: Path) -> None:
    channels = _channels(tmp_path, ["a", "b"])
    with pytest.raises(InvalidInputError, match="no channel"):
        pick_channels(channels, "²", "img")


def test_numeric_labels_do_not_shadow_positions(tmp_path: Path) -> None:
    channels = _channels(tmp_path, ["1", "2"])
    # What the page sends: positions, each channel exactly once.
    assert [c.name for c in pick_channels(channels, "#0,#1", "img")] == ["1", "2"]
    # A bare number is the channel of that name.
    assert [c.name for c in pick_channels(channels, "2", "img")] == ["2"]
    with pytest.raises(InvalidInputError, match="no channel at '#2'"):
        pick_channels(channels, "#2", "img")


def _edit_omero(path: Path, edit: Any) -> None:
    """Change the stored omero channels of the image at ``path`` (as a third party wrote it)."""
    meta = path / "zarr.json"
    document = json.loads(meta.read_text())
    edit(document["attributes"]["ome"]["omero"]["channels"])
    meta.write_text(json.dumps(document))


def test_a_bad_stored_colour_falls_back_to_the_palette(tmp_path: Path) -> None:
    _channels(tmp_path, ["a", "b"])
    path = tmp_path / "c.ome.zarr"

    def edit(channels: list[dict[str, Any]]) -> None:
        channels[1]["color"] = "FF0000FF"  # RGBA: not what omero stores

    _edit_omero(path, edit)
    with pytest.warns(UserWarning, match="'FF0000FF', not RRGGBB"):
        channels = channels_of_image(cellvol.open(path))
    assert channels[1].color == DEFAULT_CHANNEL_COLORS[1]
    with pytest.warns(UserWarning, match="not RRGGBB"):
        served = Served.open(str(path))  # served, not refused
    assert [c.name for c in served.channels] == ["a", "b"]


def test_one_bad_window_keeps_the_others(tmp_path: Path) -> None:
    _channels(tmp_path, ["a", "b", "c"])
    path = tmp_path / "c.ome.zarr"
    first: dict[str, float] = {}

    def edit(channels: list[dict[str, Any]]) -> None:
        channels[0]["window"] = first | {"start": 1.0, "end": 2.0, "min": 0.0, "max": 3.0}
        del channels[2]["window"]["end"]

    _edit_omero(path, edit)
    volume = cellvol.open(path)
    assert volume.window == Window(1.0, 2.0, 0.0, 3.0)
    assert channels_of_image(volume)[0].window == Window(1.0, 2.0, 0.0, 3.0)


def test_channels_without_colours_get_the_writers_palette(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(len(DEFAULT_CHANNEL_COLORS))]
    _channels(tmp_path, names)
    path = tmp_path / "c.ome.zarr"
    _edit_omero(path, lambda channels: channels.clear())  # no usable omero channels
    shown = [c.color for c in channels_of_image(cellvol.open(path))]
    assert shown == list(DEFAULT_CHANNEL_COLORS)  # channel 4 red, as cellvol writes it
