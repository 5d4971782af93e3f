"""A resume proves its input is the one the write began with; shards are bound to their keys.

A changed input was resumed into the store, mixing old and new voxels, because the resume
check sampled only the first and last chunk; swapped shards, a shard from another image and
edited array metadata read silently. Each is now refused, naming what differs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import IntegrityError, SourceChangedError

SHAPE = (64, 64, 64)
LAYOUT = {"chunks": (16, 16, 16), "shards": (32, 32, 32), "n_levels": 2}


def _input(path: Path, seed: int = 0) -> np.memmap:
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=SHAPE)
    data[:] = np.random.default_rng(seed).integers(0, 255, SHAPE, dtype=np.uint8)
    data.flush()
    return np.load(path, mmap_mode="r")


class Interrupted(BaseException):
    pass


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, shards: int) -> None:
    """Stop the write (as a kill would) once ``shards`` shards have been recorded."""
    from cellvol.write._ledger import Ledger

    real = Ledger.record
    count = {"n": 0}

    def record(self, level, index, facts):  # type: ignore[no-untyped-def]
        real(self, level, index, facts)
        count["n"] += 1
        if count["n"] >= shards:
            raise Interrupted

    monkeypatch.setattr(Ledger, "record", record)


@pytest.mark.parametrize("finished", [False, True], ids=["interrupted", "finished"])
def test_a_changed_input_is_not_resumed(tmp_path: Path, monkeypatch, finished: bool) -> None:
    source = _input(tmp_path / "in.npy")
    out = tmp_path / "out.ome.zarr"
    if finished:
        cellvol.write_pyramid(source, out, 1.0, **LAYOUT)
    else:
        _interrupt_after(monkeypatch, 5)
        with pytest.raises(Interrupted):
            cellvol.write_pyramid(source, out, 1.0, workers=1, **LAYOUT)
        monkeypatch.undo()
    # Change the middle of the input: the first and last chunks stay as they were.
    changed = np.load(tmp_path / "in.npy", mmap_mode="r+")
    changed[30:40, 30:40, 30:40] ^= 0xFF
    changed.flush()
    with pytest.raises(SourceChangedError, match=r"the input changed since this write began"):
        cellvol.write_pyramid(np.load(tmp_path / "in.npy", mmap_mode="r"), out, 1.0, **LAYOUT)


def test_an_unchanged_input_resumes_to_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    source = _input(tmp_path / "in.npy")
    clean = tmp_path / "clean" / "v.ome.zarr"  # the same name: it is in the metadata
    cellvol.write_pyramid(source, clean, 1.0, **LAYOUT)
    out = tmp_path / "resumed" / "v.ome.zarr"
    _interrupt_after(monkeypatch, 5)
    with pytest.raises(Interrupted):
        cellvol.write_pyramid(source, out, 1.0, workers=1, **LAYOUT)
    monkeypatch.undo()
    result = cellvol.write_pyramid(source, out, 1.0, **LAYOUT)
    assert result.shards_reused >= 4
    for path in sorted(p for p in clean.rglob("*") if p.is_file()):
        relative = path.relative_to(clean)
        if relative.parts[:2] == ("_cellvol", "done"):
            continue  # the ledger's records: each run's own
        assert (out / relative).read_bytes() == path.read_bytes(), relative


def _image(path: Path, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 255, SHAPE, dtype=np.uint8)
    cellvol.write_pyramid(data, path, 1.0, **LAYOUT)
    return data


SELECTIONS = [np.s_[0:32, 0:32, 0:32], np.s_[::2], np.s_[5], np.s_[::-1, 3, ::3]]


@pytest.mark.parametrize("selection", SELECTIONS, ids=["box", "strided", "plane", "reversed"])
def test_swapped_shards_are_refused(tmp_path: Path, selection) -> None:
    _image(tmp_path / "v.ome.zarr", 1)
    shards = tmp_path / "v.ome.zarr" / "0" / "c"
    a, b = shards / "0" / "0" / "0", shards / "1" / "1" / "1"
    swap = a.with_name("swap")
    a.rename(swap)
    b.rename(a)
    swap.rename(b)
    volume = cellvol.open(tmp_path / "v.ome.zarr")
    with pytest.raises(IntegrityError, match=r"is not the shard written under this key"):
        volume[selection]


def test_a_shard_from_another_image_is_refused(tmp_path: Path) -> None:
    data = _image(tmp_path / "v.ome.zarr", 1)
    _image(tmp_path / "other.ome.zarr", 2)
    key = Path("0", "c", "0", "1", "0")
    shutil.copyfile(tmp_path / "other.ome.zarr" / key, tmp_path / "v.ome.zarr" / key)
    volume = cellvol.open(tmp_path / "v.ome.zarr")
    np.testing.assert_array_equal(volume[32:, 32:, :], data[32:, 32:, :])  # others still read
    with pytest.raises(IntegrityError, match=r"shard 0/c/0/1/0 is not the shard written"):
        volume[0:32, 32:64, 0:32]


@pytest.mark.parametrize(("field", "value"), [("shape", [64, 64, 32]), ("data_type", "int8")])
def test_edited_array_metadata_is_refused(tmp_path: Path, field: str, value) -> None:
    _image(tmp_path / "v.ome.zarr", 1)
    document = tmp_path / "v.ome.zarr" / "0" / "zarr.json"
    metadata = json.loads(document.read_text())
    metadata[field] = value
    document.write_text(json.dumps(metadata))
    with pytest.raises(IntegrityError, match=r"the metadata was changed after the write"):
        cellvol.open(tmp_path / "v.ome.zarr")


def test_a_same_size_replaced_shard_is_written_again_on_resume(tmp_path: Path, monkeypatch) -> None:
    source = _input(tmp_path / "in.npy")
    out = tmp_path / "out.ome.zarr"
    _interrupt_after(monkeypatch, 5)
    with pytest.raises(Interrupted):
        cellvol.write_pyramid(source, out, 1.0, workers=1, uncompressed_fraction=1.0, **LAYOUT)
    monkeypatch.undo()
    # Raw shards of one level all have the same size: swap two finished ones.
    finished = sorted(p for p in (out / "0" / "c").rglob("*") if p.is_file())[:2]
    first, second = (p.read_bytes() for p in finished)
    assert len(first) == len(second)
    finished[0].write_bytes(second)
    finished[1].write_bytes(first)
    cellvol.write_pyramid(source, out, 1.0, uncompressed_fraction=1.0, **LAYOUT)
    np.testing.assert_array_equal(cellvol.open(out)[:], np.load(tmp_path / "in.npy"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["levels"]["0"].update({"0.0.0": [1, "zz"]}), "unreadable manifest"),
        (lambda m: m.update({"format": 3}), "newer than this cellvol reads"),
    ],
    ids=["bad-fingerprint", "future-format"],
)
def test_a_manifest_cellvol_cannot_read_is_named(tmp_path: Path, edit, message: str) -> None:
    _image(tmp_path / "v.ome.zarr", 1)
    document = tmp_path / "v.ome.zarr" / "_cellvol" / "manifest.json"
    manifest = json.loads(document.read_text())
    edit(manifest)
    document.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=message):
        cellvol.open(tmp_path / "v.ome.zarr")
