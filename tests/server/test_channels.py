"""Choosing an image's channels for a request (``channel=``): names, positions, bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import InvalidInputError
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
