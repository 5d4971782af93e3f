"""Pack sends the archive to the disk as it grows: finished entries only, the bytes unchanged."""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol._store import _durable, start_writeback
from cellvol.formats import _zip_entries


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("writeback") / "img.ome.zarr"
    data = np.random.default_rng(0).integers(0, 60000, (32, 48, 40), dtype=np.uint16)
    cellvol.write_pyramid(
        data, root, (2, 1, 1), chunks=(8, 16, 16), shards=(16, 32, 32), n_levels=3
    )
    return root


def test_runs_cover_finished_entries_in_order(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranges: list[tuple[int, int]] = []
    monkeypatch.setattr(_zip_entries, "_WRITEBACK_BYTES", 4096)
    monkeypatch.setattr(
        _zip_entries, "start_writeback", lambda fd, start, stop: ranges.append((start, stop))
    )
    out = cellvol.pack(image, tmp_path / "img.ozx")
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
    # Each run starts where the last ended and ends at the last page boundary before an
    # entry's end: its header is final, and the next header's page is left for later.
    ends = [i.header_offset + len(i.FileHeader(zip64=True)) + i.file_size for i in infos]
    assert len(ranges) > 1
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    for start, stop in ranges:
        assert stop - start >= 4096
        assert stop % mmap.PAGESIZE == 0
        assert any(stop <= end < stop + mmap.PAGESIZE for end in ends), stop
    assert ranges[-1][1] <= os.path.getsize(out)


def test_the_archive_is_the_same_without_writeback(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_zip_entries, "_WRITEBACK_BYTES", 4096)
    with_runs = cellvol.pack(image, tmp_path / "a.ozx").read_bytes()
    monkeypatch.setattr(_durable, "_sync_file_range", lambda: None)  # as off Linux
    without = cellvol.pack(image, tmp_path / "b.ozx").read_bytes()
    # The entries' timestamps are the pack's: compare all but the local and central headers'.
    with zipfile.ZipFile(tmp_path / "a.ozx") as a, zipfile.ZipFile(tmp_path / "b.ozx") as b:
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        assert all(a.read(i) == b.read(i.filename) for i in a.infolist())
    assert len(with_runs) == len(without)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_sync_file_range_is_called_as_the_c_library_declares_it(tmp_path: Path) -> None:
    # Wrong argument types would pass a garbled range or flag, which the kernel refuses.
    call = _durable._sync_file_range()
    assert call is not None
    data = os.urandom(1 << 20)
    with open(tmp_path / "f.bin", "wb", buffering=0) as stream:
        stream.write(data)
        assert call(stream.fileno(), 0, len(data), 2) == 0
        assert call(stream.fileno(), len(data) << 20, 1 << 40, 2) == 0  # past the end, 64-bit
        assert call(stream.fileno(), 0, len(data), 1 << 8) == -1  # an unknown flag
    assert (tmp_path / "f.bin").read_bytes() == data


def test_start_writeback_refusals_are_silent(tmp_path: Path) -> None:
    start_writeback(-1, 0, 10)  # a bad descriptor: a hint, refused without an error
    with open(tmp_path / "f.bin", "wb", buffering=0) as stream:
        stream.write(b"x" * 10)
        start_writeback(stream.fileno(), 0, 0)  # nothing to write: not called at all


def test_a_failed_run_fails_the_pack(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(descriptor: int, start: int, stop: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_zip_entries, "_WRITEBACK_BYTES", 4096)
    monkeypatch.setattr(_zip_entries, "start_writeback", failing)
    with pytest.raises(OSError, match="Input/output error"):  # not lost on its thread
        cellvol.pack(image, tmp_path / "img.ozx")
    assert list(tmp_path.iterdir()) == []
