"""Reading ahead within a byte budget: what is hinted and not yet taken never exceeds it.

The hints here are recorded, not sent to the kernel: what is checked is which bytes a reader
asks for ahead, whatever the objects' sizes (the kernel's side is ``test_readahead.py``'s).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from zarr.storage import LocalStore

import cellvol
from cellvol._store import ReadAhead, will_read_file
from cellvol._store._ahead import MAX_READ_AHEAD, read_ahead_budget
from cellvol.integrity._pool import IN_FLIGHT_PER_WORKER
from cellvol.integrity._scan import Scan
from cellvol.integrity._sources import StoreSource

MiB = 1 << 20


class _Recorder:
    """A hint that records ``(item, bytes)`` and takes at most the room it is given."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.calls: list[tuple[int, int]] = []
        self.changed = threading.Condition()

    def __call__(self, item: int, room: int) -> int:
        hinted = min(self.sizes[item], room)
        with self.changed:
            self.calls.append((item, hinted))
            self.changed.notify_all()
        return hinted

    def wait_for(self, count: int) -> list[tuple[int, int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= count, timeout=60)
            return list(self.calls)


def test_a_reader_that_stalls_is_hinted_no_more_than_the_budget() -> None:
    hint = _Recorder([100 * MiB] * 20)
    with ReadAhead(range(20), hint, budget=256 * MiB) as ahead:
        # Nothing taken yet: two whole objects and the part of the third that fits.
        assert hint.wait_for(3) == [(0, 100 * MiB), (1, 100 * MiB), (2, 56 * MiB)]
        taken = iter(ahead)
        assert next(taken) == 0
        # Taking one frees its 100 MiB: the next object gets that much, and no more.
        assert hint.wait_for(4)[3] == (3, 100 * MiB)
        assert list(taken) == list(range(1, 20))
    assert sum(n for _, n in hint.calls) <= 20 * 100 * MiB
    assert [item for item, _ in hint.calls] == sorted({item for item, _ in hint.calls})


def test_objects_larger_than_the_budget_are_hinted_in_part() -> None:
    hint = _Recorder([1 << 30] * 4)
    with ReadAhead(range(4), hint, budget=64 * MiB) as ahead:
        assert hint.wait_for(1) == [(0, 64 * MiB)]
        assert list(ahead) == [0, 1, 2, 3]
    assert all(n <= 64 * MiB for _, n in hint.calls)


@pytest.mark.parametrize(("held", "skipped"), [(0, [0, 1, 2]), (2, [0]), (3, [])])
def test_the_last_held_items_taken_are_still_hinted(held: int, skipped: list[int]) -> None:
    hint = _Recorder([10 * MiB] * 8)
    ahead = ReadAhead(range(8), hint, budget=64 * MiB, held=held)
    taken = iter(ahead)
    # A pool takes its first items before the hints start, and reads them later.
    assert [next(taken), next(taken), next(taken)] == [0, 1, 2]
    with ahead:
        calls = hint.wait_for(8 - len(skipped))  # the rest fit the budget: none is taken yet
        assert list(taken) == list(range(3, 8))
    assert [item for item, _ in calls] == [i for i in range(8) if i not in skipped]


def test_leaving_early_stops_the_hints() -> None:
    hint = _Recorder([10 * MiB] * 1000)

    def read_until_five() -> None:
        with ReadAhead(range(1000), hint, 30 * MiB) as ahead:
            for item in ahead:
                if item == 5:
                    raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        read_until_five()
    # Six taken, three ahead of them at most; the thread has ended, so none come later.
    hinted = [item for item, _ in hint.calls]
    assert hinted == sorted(set(hinted))
    assert max(hinted, default=0) <= 8


def test_without_posix_fadvise_hints_are_no_ops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on macOS or Windows: nothing is hinted, nothing counts against a budget.
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 10_000)
    monkeypatch.delattr("os.posix_fadvise", raising=False)
    assert will_read_file(path) == 0
    assert path.read_bytes() == b"x" * 10_000


def test_the_budget_is_bounded_by_memory_and_a_constant() -> None:
    assert 8 * MiB <= read_ahead_budget() <= MAX_READ_AHEAD


class _CountingSource(StoreSource):
    """A store's objects, counting the bytes hinted and not read yet (its high-water mark)."""

    def __init__(self, store: LocalStore, sizes: dict[str, int]) -> None:
        super().__init__(store)
        self.sizes = sizes
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}
        self.done: set[str] = set()
        self.most = 0

    def prefetch(self, key: str, limit: int) -> int:
        hinted = min(self.sizes.get(key, 0), limit)
        with self.lock:
            if key not in self.done:  # a hint after the read brings nothing in
                self.pending[key] = hinted
                self.most = max(self.most, sum(self.pending.values()))
        return hinted

    def read(self, key: str) -> tuple[bytes | None, list]:  # type: ignore[type-arg]
        with self.lock:
            self.done.add(key)
            self.pending.pop(key, None)
        return super().read(key)


def test_verify_hints_within_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(1).integers(0, 255, (64, 128, 128), dtype=np.uint8)
    image = tmp_path / "image.ome.zarr"
    cellvol.write_pyramid(data, image, 1.0, chunks=(16, 32, 32), shards=(16, 32, 32), n_levels=1)
    sizes = {str(p.relative_to(image)): p.stat().st_size for p in image.rglob("*") if p.is_file()}
    budget = 3 * max(sizes.values())
    monkeypatch.setattr("cellvol._store._ahead.read_ahead_budget", lambda: budget)
    store = LocalStore(image, read_only=True)
    source = _CountingSource(store, sizes)
    scan = Scan(store, str(image), listable=True, source=source, checksum=None)
    scan.image("")
    workers = 2
    scan.check_objects(workers, None)
    assert not scan.report.problems
    assert scan.report.chunks == 64
    # Hinted and not yet taken stays within the budget; beside it, the objects taken and not
    # yet read, which the pool bounds (those submitted, and the one taken to submit next).
    in_flight = workers * IN_FLIGHT_PER_WORKER + 1
    assert 0 < source.most <= budget + in_flight * max(sizes.values())
