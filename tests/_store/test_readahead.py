"""Read-ahead hints: the hinted bytes reach the page cache, the rest does not, reads are unchanged.

Residency is read with ``mincore`` over a mapping of the file, after its pages were written
back and dropped; where the file system keeps them anyway (tmpfs), the tests that need a cold
file skip and say so.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol._store import open_archive, will_read, will_read_file
from cellvol._store._readahead import _window

# Residency (mincore), dropping pages (fadvise DONTNEED) and sysfs are Linux's; elsewhere the
# hints are no-ops, checked in test_read_ahead_budget.py.
pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not hasattr(os, "posix_fadvise"),
    reason="read-ahead hints and page-cache residency are checked on Linux only",
)

PAGE = mmap.PAGESIZE
# How long the kernel's background reads may take before a test calls a hint ignored: a
# bound for a failure to show, not a speed being measured.
_SETTLE_SECONDS = 20.0


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _resident(path: Path) -> np.ndarray:
    """Whether each page of the file is in the page cache (mapping it reads nothing)."""
    libc = _libc()
    size = path.stat().st_size
    pages = (size + PAGE - 1) // PAGE
    descriptor = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), "mmap failed"
        vector = (ctypes.c_ubyte * pages)()
        failed = libc.mincore(address, size, vector)
        libc.munmap(address, size)
        assert failed == 0, f"mincore failed: errno {ctypes.get_errno()}"
    finally:
        os.close(descriptor)
    return np.frombuffer(bytes(vector), dtype=np.uint8) & 1 == 1


def _drop(path: Path) -> None:
    """Write the file back and drop its pages; skip where the file system keeps them."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    if _resident(path).any():
        pytest.skip(f"the file system of {path} keeps its pages cached: residency cannot show")


def _settled(path: Path, pages: slice) -> np.ndarray:
    """The file's residency once ``pages`` are all in (or the settling time is over)."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    resident = _resident(path)
    while not resident[pages].all() and time.monotonic() < deadline:
        time.sleep(0.01)
        resident = _resident(path)
    return resident


@pytest.fixture
def cold_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(np.random.default_rng(3).integers(0, 255, 16 << 20, dtype=np.uint8))
    _drop(path)
    return path


def test_a_hint_reads_its_range_and_nothing_far_from_it(cold_file: Path) -> None:
    # A range that starts and ends inside pages: those pages are read whole.
    start, length = (6 << 20) + 100, (1 << 20) + 123
    descriptor = os.open(cold_file, os.O_RDONLY)
    try:
        will_read(descriptor, start, length)
    finally:
        os.close(descriptor)
    hinted = slice(start // PAGE, (start + length - 1) // PAGE + 1)
    resident = _settled(cold_file, hinted)
    assert resident[hinted].all(), f"{(~resident[hinted]).sum()} hinted pages never read"
    # Far from the range (2 MiB either side): not read, so a hint costs only what it names.
    assert not resident[: (4 << 20) // PAGE].any()
    assert not resident[(10 << 20) // PAGE :].any()


def test_a_whole_file_hint_reads_it_all(cold_file: Path) -> None:
    assert will_read_file(cold_file) == 16 << 20
    everything = slice(0, None)
    assert _settled(cold_file, everything).all()


def test_an_empty_range_hints_nothing(cold_file: Path) -> None:
    descriptor = os.open(cold_file, os.O_RDONLY)
    try:
        assert will_read(descriptor, 1 << 20, 0) == 0
        assert will_read_file(cold_file, 0) == 0
    finally:
        os.close(descriptor)
    assert not _resident(cold_file).any()


def test_hints_past_the_end_or_on_nothing_are_harmless(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * 5000)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        will_read(descriptor, 4096, 1 << 30)  # from the last page far past the end
        will_read(descriptor, 1 << 40, 4096)  # wholly past the end
    finally:
        os.close(descriptor)
    will_read_file(tmp_path / "missing.bin")  # a missing file is the read's to report
    will_read_file(tmp_path)  # a directory: nothing to read ahead
    assert path.read_bytes() == b"x" * 5000


# --- an archive's entries --------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("readahead-ozx")
    data = np.random.default_rng(5).integers(0, 255, (64, 128, 128), dtype=np.uint8)
    image = where / "image.ome.zarr"
    cellvol.write_pyramid(data, image, 1.0, chunks=(16, 32, 32), shards=(32, 64, 64), n_levels=2)
    return cellvol.pack(image, where / "image.ozx")


def test_an_entry_hint_reads_its_header_and_data(archive_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.ozx"
    path.write_bytes(archive_path.read_bytes())
    _drop(path)
    archive = open_archive(path, None)
    try:
        # The largest entry, and the one stored after it: pages shared at their boundary are
        # read once, whichever hint comes first.
        infos = sorted(archive.entries, key=lambda info: info.header_offset)
        number = max(range(len(infos) - 1), key=lambda n: infos[n].compress_size)
        chosen = infos[number]
        archive.prefetch(chosen)
        first, last = archive.extent(chosen)
        hinted = slice(first // PAGE, (last - 1) // PAGE + 1)
        resident = _settled(path, hinted)
        assert resident[hinted].all()
        assert not resident[: max(0, first // PAGE - 1)].any()  # the entries before: not asked
        archive.prefetch(infos[number + 1])
        entry = archive.read_entry(chosen)
        following = archive.read_entry(infos[number + 1])
    finally:
        archive.close()
    with zipfile.ZipFile(archive_path) as reference:
        assert entry is not None
        assert entry.data == reference.read(chosen.filename)
        assert following is not None
        assert following.data == reference.read(infos[number + 1].filename)


def test_hints_for_a_truncated_archive_are_harmless(archive_path: Path, tmp_path: Path) -> None:
    # Cut within its comment: the central directory is whole, so the last entries' extents
    # (header, room for the extra field, data) run past the end of the file.
    path = tmp_path / "cut.ozx"
    path.write_bytes(archive_path.read_bytes()[:-10])
    archive = open_archive(path, None)
    try:
        assert archive.missing_tail == 10
        for info in archive.entries:
            archive.prefetch(info)
        last = max(archive.entries, key=lambda info: info.header_offset)
        entry = archive.read_entry(last)
    finally:
        archive.close()
    with zipfile.ZipFile(archive_path) as reference:
        assert entry is not None
        assert entry.data == reference.read(last.filename)
    (problem,) = cellvol.verify(path).problems
    assert problem.kind == "archive"
    assert "truncated" in problem.detail


def test_a_file_system_without_a_block_device_gets_the_default_window() -> None:
    # procfs has no device queue to ask: the kernel's default read-ahead is the window.
    assert _window(os.stat("/proc").st_dev) == 128 << 10
    assert _window(os.stat(__file__).st_dev) >= 4 << 10
