"""The parts the writer, the reader and the server spend their time in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cellvol._codec._shard import encode_shard
from cellvol.labels._segments import compute_segments
from cellvol.ome._display import contrast_window
from cellvol.server._render import encode, label_overlay, render
from cellvol.synthetic import SyntheticVolume
from cellvol.write._downsample import downsample

BLOCK = SyntheticVolume((128, 128, 128), seed=1)[...]
LABELS = SyntheticVolume((128, 128, 128), kind="labels", seed=1)[...]


@pytest.mark.parametrize("method", ["mean", "mode", "stride"])
def test_downsample_block(benchmark: Any, method: str) -> None:
    source = LABELS if method == "mode" else BLOCK
    out = benchmark(downsample, source, (2, 2, 2), method)
    assert out.shape == (64, 64, 64)


def test_encode_shard(benchmark: Any) -> None:
    encoded = benchmark(encode_shard, BLOCK, (64, 64, 64), (128, 128, 128), 3)
    benchmark.extra_info["ratio"] = round(BLOCK.nbytes / sum(len(part) for part in encoded), 2)


def test_segment_table_of_a_block(benchmark: Any) -> None:
    table = benchmark(
        compute_segments, LABELS.__getitem__, LABELS.shape, scale=(1, 1, 1), translation=(0, 0, 0)
    )
    assert len(table) > 0


def test_contrast_window(benchmark: Any) -> None:
    window = benchmark(contrast_window, BLOCK.__getitem__, BLOCK.shape, (32, 32, 32), BLOCK.dtype)
    assert window.end > window.start


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_render_tile(benchmark: Any, fmt: str) -> None:
    plane = BLOCK[64, :, :]
    labels = LABELS[64, :, :]

    def tile() -> bytes:
        image = label_overlay(render(plane, (20.0, 220.0)), labels, {}, 0.5)
        return encode(np.ascontiguousarray(image), fmt)[0]

    assert benchmark(tile)
