"""The lazy arrays sources hand to the writer: memory maps, transposed views, region keys."""

import mmap
import pickle
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from memory_helpers import resident_kib

from cellvol.write._inputs import MemmapSource, Transposed, portable, region_of
from cellvol.write._mapped import MappedPages, keeping_mapped, release_mapped

DATA = np.random.default_rng(9).integers(0, 60000, (32, 128, 256), dtype=np.uint16)


@pytest.fixture
def mapped(tmp_path: Path) -> MemmapSource:
    np.save(tmp_path / "d.npy", DATA)
    source = portable(np.load(tmp_path / "d.npy", mmap_mode="r"))
    assert isinstance(source, MemmapSource)
    return source


def test_reads_from_eight_threads_are_correct(mapped: MemmapSource) -> None:
    failures: list[tuple[int, int]] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(100):
            z, y = int(rng.integers(0, 28)), int(rng.integers(0, 100))
            if not np.array_equal(
                mapped[z : z + 4, y : y + 28, 3:250], DATA[z : z + 4, y : y + 28, 3:250]
            ):
                failures.append((z, y))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_reads_return_copies_and_pickle_small(mapped: MemmapSource) -> None:
    block = mapped[1:3, :, :]
    assert block.flags.owndata
    assert len(pickle.dumps(mapped)) < 500
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mapped))[5], DATA[5])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_pages_read_are_released_from_the_process(mapped: MemmapSource) -> None:
    for z in range(0, 32, 4):  # 2 MiB of pages pass through the map
        mapped[z : z + 4, :, :]
    assert resident_kib(mapped.filename) < 256  # a full map would hold 2048 KiB


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_a_write_keeps_the_pages_of_its_last_reads_mapped_within_its_budget(
    tmp_path: Path,
) -> None:
    # 16 MiB of 1 KiB rows: eight planes are one 2 MiB folio, the unit pages are released in.
    data = np.random.default_rng(3).integers(0, 255, (64, 256, 1024), dtype=np.uint8)
    np.save(tmp_path / "wide.npy", data)
    source = portable(np.load(tmp_path / "wide.npy", mmap_mode="r"))
    budget = 4 * 2**20
    with keeping_mapped(budget):
        for z in range(0, 64, 8):
            for x in (0, 512):  # side by side along x: the same rows, the same pages
                np.testing.assert_array_equal(
                    source[z : z + 8, :, x : x + 512], data[z : z + 8, :, x : x + 512]
                )
        # The last two batches of rows are kept, and nothing older.
        assert 2 * 2**10 < resident_kib(source.filename) <= budget // 2**10 + 256
    release_mapped()
    assert resident_kib(source.filename) < 256


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_making_room_for_a_read_does_not_release_the_rows_it_reads(tmp_path: Path) -> None:
    # Two shards along y of the same planes: the first one's span covers the second one's
    # rows. With room for one shard's rows, the first is released to make room for the second
    # before the second is read, not after, which would drop the rows just read.
    data = np.random.default_rng(4).integers(0, 255, (8, 512, 1024), dtype=np.uint8)
    np.save(tmp_path / "planes.npy", data)
    source = portable(np.load(tmp_path / "planes.npy", mmap_mode="r"))
    with keeping_mapped(8 * 256 * 1024):  # the rows of one shard
        for y in (0, 256):
            np.testing.assert_array_equal(source[:, y : y + 256, :512], data[:, y : y + 256, :512])
        assert resident_kib(source.filename) >= 1536  # most of the second shard's 2 MiB of rows
    release_mapped()
    assert resident_kib(source.filename) < 256


def test_transposed_reads_the_permuted_region() -> None:
    view = Transposed(DATA, (2, 0, 1))
    assert view.shape == (256, 32, 128)
    np.testing.assert_array_equal(
        view[10:20, 3:9, 100:128], DATA.transpose(2, 0, 1)[10:20, 3:9, 100:128]
    )


def test_region_of_accepts_unit_slices_only() -> None:
    assert region_of((slice(None), slice(2, 5)), (4, 6, 8)) == (
        slice(0, 4),
        slice(2, 5),
        slice(0, 8),
    )
    with pytest.raises(IndexError, match="expected 3 slices"):
        region_of((1, slice(None), slice(None)), (4, 6, 8))
    with pytest.raises(IndexError, match="unit-step"):
        region_of((slice(0, 4, 2),), (4, 6, 8))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_a_span_read_while_another_thread_makes_room_stays_tracked(tmp_path: Path) -> None:
    # Two reads interleaved as two threads may run them, with room for one read's rows: the
    # second read making room must not release the first one's span while it is copied, or
    # the first copy maps its pages again untracked and release_mapped() misses them.
    path = tmp_path / "planes.bin"
    path.write_bytes(np.random.default_rng(5).integers(0, 255, 8 * 2**20, np.uint8).tobytes())
    with open(path, "rb") as stream:
        file_map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    pages = MappedPages(file_map)
    view = np.frombuffer(file_map, dtype=np.uint8)
    half = 4 * 2**20
    spans = {"a": (0, half), "b": (half, half)}
    with keeping_mapped(half):
        assert pages.make_room((0, 4 * 2**20 - 1, 1), half)  # thread a, about to copy
        assert pages.make_room((4 * 2**20, 8 * 2**20 - 1, 1), half)  # thread b, about to copy
        for name, (start, length) in spans.items():
            assert view[start : start + length].sum() > 0  # the copy maps the span's pages
            pages.note((start, start + length - 1, 1), half, spans[name])
        assert resident_kib(str(path)) <= half // 2**10 + 256  # a was released for b
    release_mapped()
    assert resident_kib(str(path)) < 256
    del view
    file_map.close()
