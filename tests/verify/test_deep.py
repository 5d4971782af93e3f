"""``cellvol.verify(deep=...)``: coarser levels recomputed from the level below, bit for bit.

A wrong pyramid is made by writing while the write's fold of the kernel's output is off by
one in a small region: every checksum, manifest entry and fingerprint then agrees with the
wrong data, so only recomputing the level finds it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app
from cellvol.integrity import _deep
from cellvol.write import _tasks

SHAPE = (40, 48, 56)
LAYOUT: dict[str, Any] = {"chunks": (8, 8, 8), "shards": (16, 16, 16), "n_levels": 3}
# Level 1 is (20, 24, 28): 2x2x2 shards. The one at (1, 1, 1) starts at voxel (16, 16, 16).
WRONG_SHARD = "1/c/1/1/1"
WRONG_START = (16, 16, 16)
# Off by one in a 2x2x1 box of that shard: its first voxel, in level-1 coordinates.
WRONG_BOX = (slice(1, 3), slice(2, 4), slice(0, 1))
WRONG_FIRST = [17, 18, 16]
runner = CliRunner()


def _noise(shape: tuple[int, ...], dtype: Any, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.fixture
def off_by_one(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Calling it makes later writes store level 1's shard at WRONG_START off by one."""
    original = _tasks._fold_children

    def wrong(level: int, shard: Any, *args: Any) -> np.ndarray:
        out = original(level, shard, *args)
        if level == 1 and tuple(s.start for s in shard) == WRONG_START:
            out[WRONG_BOX] += 1
        return out

    return lambda: monkeypatch.setattr(_tasks, "_fold_children", wrong)


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("deep") / "image.ome.zarr"
    data = _noise(SHAPE, np.uint8)
    cellvol.write_pyramid(data, dest, 1.0, **LAYOUT)
    cellvol.write_labels(dest, (data // 40).astype(np.uint16), "cells")
    return dest


@pytest.fixture
def wrong(tmp_path: Path, off_by_one: Callable[[], None]) -> Path:
    dest = tmp_path / "wrong.ome.zarr"
    off_by_one()
    cellvol.write_pyramid(_noise(SHAPE, np.uint8), dest, 1.0, **LAYOUT)
    return dest


@pytest.mark.parametrize(
    ("shape", "dtype", "method", "layout"),
    [
        (SHAPE, np.uint8, "mean", LAYOUT),
        ((37, 45, 51), np.uint16, "mean", LAYOUT),  # partial windows and shards at the edges
        ((37, 45, 51), np.float32, "mean", LAYOUT),
        ((21, 64, 61), np.float32, "mean", LAYOUT | {"factors": [(1, 2, 2), (2, 2, 2)]}),
        (
            (50, 33, 61),
            np.int16,
            "max",
            LAYOUT | {"shards": (24, 16, 16), "factors": [(1, 2, 4), (3, 2, 1)]},
        ),
        ((19, 35, 50), np.uint32, "mode", LAYOUT | {"factors": [(1, 2, 2), (2, 2, 2)]}),
    ],
)
def test_intact_pyramids_pass_deep_verify(
    tmp_path: Path, shape: tuple[int, ...], dtype: Any, method: str, layout: dict[str, Any]
) -> None:
    dest = tmp_path / "image.ome.zarr"
    data = _noise(shape, dtype)
    if method == "mode":
        data //= np.iinfo(dtype).max // 5  # few labels, so windows hold ties and majorities
    cellvol.write_pyramid(data, dest, 1.0, method=method, **layout)
    report = cellvol.verify(dest, deep=True, workers=2)
    assert report.problems == [], report.summary()
    assert report.unchecked == []
    volume = cellvol.open(dest)
    expected = sum(
        int(np.prod([-(-n // s) for n, s in zip(level.shape, level.shards or (), strict=True)]))
        for level in volume.levels[1:]
    )
    assert report.recomputed == expected


def test_intact_image_and_labels_pass_deep_verify(intact: Path) -> None:
    report = cellvol.verify(intact, deep=True)
    assert report.problems == [], report.summary()
    assert report.unchecked == []
    assert report.images == ["", "labels/cells"]
    # Per image: level 1 (2x2x2 shards) and level 2 (one shard).
    assert report.recomputed == 2 * 9
    assert "recomputed 18 shard(s)" in report.summary()


@pytest.mark.parametrize("piece_bytes", [None, 512], ids=["chunks", "small-pieces"])
def test_wrong_pyramid_passes_checksums_and_fails_deep_verify(
    wrong: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int | None
) -> None:
    if piece_bytes is not None:
        # Chunks split into many pieces: the counts and the first voxel are those of the shard.
        monkeypatch.setattr(_deep, "_PIECE_BYTES", piece_bytes)
    assert cellvol.verify(wrong).intact
    for deep in (True, 1.0):
        report = cellvol.verify(wrong, deep=deep)
        (problem,) = report.problems
        assert problem.key == WRONG_SHARD
        assert problem.kind == "pyramid"
        assert "4 voxel(s) differ" in problem.detail
        assert f"at {WRONG_FIRST}" in problem.detail
        assert problem.byte_range is None


def test_wrong_label_pyramid_is_reported_by_key(
    tmp_path: Path, off_by_one: Callable[[], None]
) -> None:
    dest = tmp_path / "image.ome.zarr"
    data = _noise(SHAPE, np.uint8)
    cellvol.write_pyramid(data, dest, 1.0, **LAYOUT)
    off_by_one()
    cellvol.write_labels(dest, (data // 40).astype(np.uint16), "cells")
    assert cellvol.verify(dest).intact
    (problem,) = cellvol.verify(dest, deep=True).problems
    assert (problem.key, problem.kind) == (f"labels/cells/{WRONG_SHARD}", "pyramid")
    assert f"at {WRONG_FIRST}" in problem.detail


def test_sample_finds_the_wrong_shard_when_seeded_to(wrong: Path) -> None:
    found: dict[int, bool] = {}
    for seed in range(12):
        report = cellvol.verify(wrong, deep=0.25, seed=seed)
        assert [p.key for p in report.problems] in ([], [WRONG_SHARD])
        found[seed] = not report.intact
        # Level 1: 2 of 8 shards; level 2: its single shard.
        assert report.recomputed == 3
        (note,) = report.unchecked
        assert f"seed {seed}" in note
        assert "level 1: 2 of 8" in note
    assert any(found.values())
    assert not all(found.values())
    # The same seed chooses the same shards.
    seed = next(s for s, hit in found.items() if hit)
    assert not cellvol.verify(wrong, deep=0.25, seed=seed).intact
    assert _deep.sample(8, 0.25, seed, 0, 1) == _deep.sample(8, 0.25, seed, 0, 1)
    assert len(_deep.sample(8, 0.01, seed, 0, 1)) == 1  # at least one shard per level


def test_deep_fraction_must_be_within_zero_and_one(intact: Path) -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(cellvol.InvalidInputError, match="fraction"):
            cellvol.verify(intact, deep=bad)


def test_image_without_a_record_of_its_method_is_not_recomputed(tmp_path: Path) -> None:
    # Levels made by max, as another tool's might be: recomputing by mean would disagree.
    dest = tmp_path / "image.ome.zarr"
    data = _noise(SHAPE, np.uint8)
    cellvol.write_pyramid(data, dest, 1.0, method="max", **LAYOUT)
    shutil.rmtree(dest / "_cellvol")
    (dest / "ro-crate-metadata.json").unlink()  # another tool leaves none of cellvol's records
    document = json.loads((dest / "zarr.json").read_text())
    del document["attributes"]["cellvol"]
    (dest / "zarr.json").write_text(json.dumps(document))
    report = cellvol.verify(dest, deep=True)
    assert report.intact, report.summary()
    assert report.recomputed == 0
    assert any("unknown method" in gap for gap in report.unchecked)


def test_damage_found_by_checksums_does_not_stop_the_deep_pass(
    intact: Path, tmp_path: Path
) -> None:
    image = tmp_path / "image.ome.zarr"
    shutil.copytree(intact, image)
    shard = image / "0/c/0/0/0"
    raw = bytearray(shard.read_bytes())
    raw[5] ^= 0xFF  # in the first chunk's compressed bytes
    shard.write_bytes(bytes(raw))
    (image / "labels/cells/0/c/1/1/1").unlink()
    report = cellvol.verify(image, deep=True)
    assert {(p.key, p.kind) for p in report.problems} == {
        ("0/c/0/0/0", "chunk-checksum"),
        ("labels/cells/0/c/1/1/1", "missing"),
    }
    skipped = [gap for gap in report.unchecked if "not recomputed in full" in gap]
    assert any(gap.startswith("1/c/0/0/0:") for gap in skipped)
    assert any(gap.startswith("labels/cells/1/c/0/0/0:") for gap in skipped)
    assert report.recomputed == 2 * 9 - len(skipped)


def test_deep_verify_over_http(wrong: Path, http_server: Callable[[Path], str]) -> None:
    report = cellvol.verify(f"{http_server(wrong.parent)}/wrong.ome.zarr", deep=True)
    # Every shard recomputed; the only one that differs is the wrong one.
    assert report.recomputed == 9
    (problem,) = report.problems
    assert (problem.key, problem.kind) == (WRONG_SHARD, "pyramid")


def test_progress_has_one_deep_stage_per_image(intact: Path) -> None:
    events: list[cellvol.ProgressEvent] = []
    report = cellvol.verify(intact, deep=True, progress=events.append)
    last = {e.stage: e for e in events}
    assert sorted(last) == [0, 1, 2, 3]
    assert all(e.done == e.total for e in last.values())
    assert last[2].levels == last[3].levels == (1, 2)
    assert last[2].total + last[3].total == report.recomputed
    assert last[2].nbytes > 0


def test_interrupt_stops_the_deep_pass_promptly(
    intact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recomputed: list[int] = []
    original = _deep.downsample

    def counted(block: np.ndarray, factors: Any, method: Any) -> np.ndarray:
        recomputed.append(block.size)
        return original(block, factors, method)

    monkeypatch.setattr(_deep, "downsample", counted)

    def interrupt(event: cellvol.ProgressEvent) -> None:
        if event.stage >= 2 and event.done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cellvol.verify(intact, deep=True, workers=2, progress=interrupt)
    # The image's levels 1 and 2 hold 3*3*4 + 2*2*2 chunks: pieces queued after the first
    # shard (8 chunks) are cancelled, only those already in flight (2 per worker) finish.
    assert 8 <= len(recomputed) <= 8 + 2 * 2
    assert len(recomputed) < 3 * 3 * 4 + 2 * 2 * 2


def test_cli_deep_exit_codes_and_json(intact: Path, wrong: Path) -> None:
    result = runner.invoke(app, ["verify", str(intact), "--deep"])
    assert result.exit_code == 0, result.output
    assert "recomputed 18 shard(s)" in result.output
    assert runner.invoke(app, ["verify", str(wrong)]).exit_code == 0
    # A seed whose half sample of level 1 (image 0) holds the wrong shard, the last of 8.
    seed = next(s for s in range(100) if 7 in _deep.sample(8, 0.5, s, 0, 1))
    for options in (
        ["--deep"],
        ["--deep-sample", "1.0"],
        ["--deep-sample", "0.5", f"--seed={seed}"],
    ):
        result = runner.invoke(app, ["verify", str(wrong), "--json", *options])
        assert result.exit_code == 1, result.output
        body = json.loads(result.output)
        assert body["intact"] is False
        (problem,) = body["problems"]
        assert (problem["key"], problem["kind"]) == (WRONG_SHARD, "pyramid")
        assert body["recomputed"] >= 2
    result = runner.invoke(app, ["verify", str(wrong), "--deep"])
    assert result.exit_code == 1
    assert f"{WRONG_SHARD}: pyramid" in result.output
    for bad in (["--deep-sample", "0"], ["--deep", "--deep-sample", "0.5"]):
        result = runner.invoke(app, ["verify", str(intact), *bad])
        assert result.exit_code == 2, result.output


def test_pieces_tile_a_chunk_and_bound_the_region_below() -> None:
    # A 256³ float32 chunk over factors (1, 2, 2): 256 MiB below it, far above a piece.
    box = [(0, 256), (0, 256), (0, 256)]
    factors, below_shape = (1, 2, 2), (256, 512, 512)
    pieces = list(_deep._halved(box, factors, below_shape, 4))
    covered = np.zeros((256, 256, 256), dtype=np.uint8)
    for piece in pieces:
        below = _deep._below(piece, factors, below_shape)
        assert np.prod([b - a for a, b in below]) * 4 <= _deep._PIECE_BYTES
        covered[tuple(slice(a, b) for a, b in piece)] += 1
    assert (covered == 1).all()  # every voxel in exactly one piece
    assert len(pieces) == 16
