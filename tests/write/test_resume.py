"""Interrupted writes resume to exactly the bytes of an uninterrupted one."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol.errors import WriteConflictError
from cellvol.synthetic import SyntheticVolume

LAYOUT = {"chunks": (16, 16, 16), "shards": (32, 32, 32), "n_levels": 3, "name": "tomo"}
SHAPE = (64, 96, 128)


def data_files(root: Path) -> dict[str, str]:
    """Digest of every file of the image except the ledger (compared whole in
    ``test_a_resumed_store_is_identical_object_for_object``)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "_cellvol"
    }


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    result = cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), path, 2.0, **LAYOUT)
    assert result.shards_reused == 0
    return data_files(path)


class Flaky:
    """A source that fails after ``n`` reads, as a crashed reader or network would."""

    def __init__(self, source: SyntheticVolume, n: int) -> None:
        self.source, self.n, self.shape, self.dtype = source, n, source.shape, source.dtype
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        if self.reads > self.n:
            raise OSError("simulated read failure")
        return self.source[key]


@pytest.mark.parametrize("fail_after", [3, 10, 25])
def test_resume_after_failure_is_byte_identical(
    tmp_path: Path, clean_build, fail_after: int
) -> None:
    dest = tmp_path / "r.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, fail_after), dest, 2.0, workers=1, **LAYOUT)
    with pytest.raises(cellvol.NotOMEZarrError):
        cellvol.open(dest)  # not mistaken for a finished image
    result = cellvol.write_pyramid(source, dest, 2.0, **LAYOUT)
    assert result.shards_reused > 0
    assert data_files(dest) == clean_build
    assert (dest / "_cellvol" / "complete.json").exists()


def every_object(root: Path) -> dict[str, str]:
    """Digest of every file of the store, the ledger included."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_resumed_store_is_identical_object_for_object(tmp_path: Path) -> None:
    # Run statistics (shards written or reused) go to WriteResult only, never into the store,
    # so a digest of the whole store cannot tell a resumed write from an uninterrupted one.
    source = SyntheticVolume(SHAPE, seed=7)
    clean = cellvol.write_pyramid(source, tmp_path / "clean.zarr", 2.0, **LAYOUT)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 10), tmp_path / "r.zarr", 2.0, workers=1, **LAYOUT)
    resumed = cellvol.write_pyramid(source, tmp_path / "r.zarr", 2.0, **LAYOUT)
    assert resumed.shards_reused > 0
    assert resumed.shards_written + resumed.shards_reused == clean.shards_written
    assert every_object(tmp_path / "r.zarr") == every_object(tmp_path / "clean.zarr")


def test_torn_shard_is_detected_and_rewritten(tmp_path: Path, clean_build) -> None:
    dest = tmp_path / "t.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 12), dest, 2.0, workers=1, **LAYOUT)
    shard = dest / "0" / "c" / "0" / "0" / "0"
    assert shard.exists()
    with shard.open("r+b") as f:  # as a non-atomic store could leave it
        f.truncate(shard.stat().st_size // 2)
    cellvol.write_pyramid(source, dest, 2.0, **LAYOUT)
    assert data_files(dest) == clean_build


def test_finished_write_is_not_redone(tmp_path: Path) -> None:
    dest = tmp_path / "f.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    cellvol.write_pyramid(source, dest, 2.0, **LAYOUT)
    again = cellvol.write_pyramid(source, dest, 2.0, **LAYOUT)
    assert again.shards_written == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"method": "max"}, "method"),
        ({"compression_level": 5}, "compression"),
        ({"uncompressed_fraction": 0.0}, "compression"),
        ({"shards": (64, 64, 64)}, "levels"),
        ({"voxel_size": 3.0}, "voxel_size"),
    ],
)
def test_different_parameters_are_refused(tmp_path: Path, change: dict, named: str) -> None:
    dest = tmp_path / "d.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 5), dest, 2.0, workers=1, **LAYOUT)
    arguments = {"voxel_size": 2.0, **LAYOUT, **change}
    with pytest.raises(WriteConflictError, match=rf"different parameters(.|\n)*{named}: recorded"):
        cellvol.write_pyramid(source, dest, **arguments)


def test_different_data_with_the_same_shape_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "s.zarr"
    cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), dest, 2.0, **LAYOUT)
    with pytest.raises(WriteConflictError, match="source_sample"):
        cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=8), dest, 2.0, **LAYOUT)


def test_foreign_content_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "foreign"
    dest.mkdir()
    (dest / "thesis.pdf").write_bytes(b"irreplaceable")
    with pytest.raises(WriteConflictError, match="not empty and holds no cellvol write"):
        cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0)
    assert (dest / "thesis.pdf").read_bytes() == b"irreplaceable"


def test_a_foreign_zarr_group_is_refused(tmp_path: Path) -> None:
    import zarr

    dest = tmp_path / "theirs.zarr"
    zarr.open_group(dest, mode="w", attributes={"owner": "someone else"})
    with pytest.raises(WriteConflictError, match="already holds a zarr group that cellvol did"):
        cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0)
    assert dict(zarr.open_group(dest, mode="r").attrs) == {"owner": "someone else"}


def test_unreadable_zarr_metadata_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "broken.zarr"
    dest.mkdir()
    (dest / "zarr.json").write_bytes(b"{truncated")
    with pytest.raises(WriteConflictError, match=r"cannot read .*zarr.json is not valid JSON"):
        cellvol.write_pyramid(np.zeros((8, 8, 8), np.uint8), dest, 1.0)
    assert (dest / "zarr.json").read_bytes() == b"{truncated"


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import cellvol
    from cellvol.synthetic import SyntheticVolume
    cellvol.write_pyramid(SyntheticVolume({shape}, seed=7), sys.argv[1], 2.0, workers=2, **{layout})
    """
)


def test_kill_9_at_random_moments_then_resume(tmp_path: Path, clean_build) -> None:
    script = tmp_path / "write.py"
    script.write_text(KILL_SCRIPT.format(shape=SHAPE, layout=LAYOUT))
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(tmp_path / "timing.zarr")], check=True)
    duration = time.perf_counter() - started
    rng = random.Random(2026)
    interrupted = 0
    for trial in range(10):
        dest = tmp_path / f"k{trial}.zarr"
        process = subprocess.Popen([sys.executable, str(script), str(dest)])
        time.sleep(rng.uniform(0.0, duration))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            interrupted += 1
        process.wait()
        cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), dest, 2.0, **LAYOUT)
        assert data_files(dest) == clean_build, f"trial {trial} differs from a clean build"
    assert interrupted >= 5, "too few trials were actually killed mid-write"


def test_distributed_gives_the_same_bytes(tmp_path: Path, clean_build, cluster_client) -> None:
    dest = tmp_path / "dist.zarr"
    result = cellvol.write_pyramid(
        SyntheticVolume(SHAPE, seed=7), dest, 2.0, client=cluster_client, **LAYOUT
    )
    assert result.shards_written > 0
    assert data_files(dest) == clean_build


def test_memory_mapped_source_travels_to_worker_processes(tmp_path: Path, cluster_client) -> None:
    raw = tmp_path / "raw.npy"
    data = np.lib.format.open_memmap(raw, mode="w+", dtype=np.uint16, shape=(40, 50, 60))
    data[:] = np.arange(data.size, dtype=np.uint16).reshape(data.shape)
    data.flush()
    source = np.load(raw, mmap_mode="r")
    cellvol.write_pyramid(source, tmp_path / "m.zarr", 1.0, client=cluster_client)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "m.zarr")[:], np.load(raw))


def test_a_second_write_to_the_same_place_on_a_cluster_uses_its_own_layout(
    tmp_path: Path, cluster_client
) -> None:
    # Workers keep a job's open arrays between tasks; a later write to the same URL with
    # another layout and other data must not run on what they kept from the first.
    dest = tmp_path / "again.zarr"
    first = np.random.default_rng(1).integers(0, 255, (40, 48, 56), dtype=np.uint8)
    cellvol.write_pyramid(
        first, dest, 1.0, chunks=(8, 8, 8), shards=(16, 16, 16), client=cluster_client
    )
    second = np.random.default_rng(2).integers(0, 65535, (36, 44, 52), dtype=np.uint16)
    cellvol.write_pyramid(
        second, dest, 1.0, chunks=(4, 8, 8), shards=(8, 16, 16), n_levels=2, overwrite=True,
        client=cluster_client,
    )  # fmt: skip
    volume = cellvol.open(dest)
    np.testing.assert_array_equal(volume[:], second)
    expected = cellvol.write_pyramid(
        second, tmp_path / "threads.zarr", 1.0, chunks=(4, 8, 8), shards=(8, 16, 16), n_levels=2
    )
    np.testing.assert_array_equal(volume.level(1)[:], cellvol.open(expected.url).level(1)[:])
    # Nothing of either write stays open on the workers once it has returned.
    assert set(cluster_client.run(_jobs_kept_open).values()) == {0}


def test_a_failed_write_on_a_cluster_reports_its_own_error_and_resumes(
    tmp_path: Path, clean_build, cluster_client
) -> None:
    dest = tmp_path / "failed.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 0), dest, 2.0, client=cluster_client, **LAYOUT)
    assert set(cluster_client.run(_jobs_kept_open).values()) == {0}
    cellvol.write_pyramid(source, dest, 2.0, client=cluster_client, **LAYOUT)
    assert data_files(dest) == clean_build


def _jobs_kept_open() -> int:
    from cellvol.write import _tasks as tasks

    return len(tasks._JOBS) + len(tasks._CONTEXTS)


def test_corrupt_chunk_is_reported_on_read(tmp_path: Path) -> None:
    dest = tmp_path / "c.zarr"
    cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), dest, 2.0, **LAYOUT)
    shard = dest / "0" / "c" / "0" / "0" / "0"
    damaged = bytearray(shard.read_bytes())
    damaged[200] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    vol = cellvol.open(dest)
    with pytest.raises(cellvol.IntegrityError, match=r"chunk .* in 0/c/.* fails its CRC32C"):
        vol[:16, :16, :16]
    vol[40:, 40:, 40:]  # chunks elsewhere still read


def test_leftover_temporaries_of_a_killed_write_are_removed(tmp_path: Path, clean_build) -> None:
    dest = tmp_path / "p.zarr"
    source = SyntheticVolume(SHAPE, seed=7)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 4), dest, 2.0, workers=1, **LAYOUT)
    # What zarr's atomic write leaves when killed between writing and renaming.
    (dest / "0" / "c" / "1" / "1").mkdir(parents=True, exist_ok=True)
    (dest / "0" / "c" / "1" / "1" / f"1.{'ab' * 16}.partial").write_bytes(b"half a shard")
    cellvol.write_pyramid(source, dest, 2.0, **LAYOUT)
    assert data_files(dest) == clean_build


def test_a_kill_before_the_job_record_landed_is_not_foreign(tmp_path: Path, clean_build) -> None:
    dest = tmp_path / "j.zarr"
    (dest / "_cellvol").mkdir(parents=True)
    (dest / "_cellvol" / f"job.{'cd' * 16}.partial").write_bytes(b"{")
    cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), dest, 2.0, **LAYOUT)
    assert data_files(dest) == clean_build


@pytest.mark.parametrize("background", [False, True], ids=["local-inline", "object-store-queue"])
def test_a_parent_is_recorded_only_after_all_its_children(
    tmp_path: Path, monkeypatch, background: bool
) -> None:
    # A resume skips a recorded top shard without looking beneath it, so records must always
    # describe complete subtrees, however the stores are scheduled: in the task's thread (a
    # local store) or by background writers (an object store, imitated here on local files).
    import threading

    import cellvol.write._tasks
    from cellvol.write._ledger import Ledger
    from cellvol.write._plan import child_regions, shard_regions

    original_write, original_record = cellvol.write._tasks.write_bytes, Ledger.record
    order: list[tuple[int, tuple[int, ...]]] = []
    writing_threads: set[str] = set()
    lock = threading.Lock()

    def slow_level0_write(store, key, data, sha256=None):
        if key.startswith("0/"):
            time.sleep(0.02)  # level-0 stores finish last unless the writer waits for them
        with lock:
            writing_threads.add(threading.current_thread().name.split("_")[0])
        original_write(store, key, data, sha256)

    def remember(self, level, index, nbytes):
        original_record(self, level, index, nbytes)
        with lock:
            order.append((level, tuple(index)))

    monkeypatch.setattr(cellvol.write._tasks, "write_bytes", slow_level0_write)
    monkeypatch.setattr(Ledger, "record", remember)
    if background:
        monkeypatch.setattr(cellvol.write._tasks, "is_local_store", lambda store: False)
    result = cellvol.write_pyramid(
        SyntheticVolume((64, 128, 128), seed=1),
        tmp_path / "o.zarr",
        1.0,
        chunks=(8, 8, 8),
        shards=(16, 16, 16),  # 256 level-0 shards: stage 0 builds levels 0 and 1 together
        n_levels=3,
        workers=2,
    )
    assert any(len(stage.levels) > 1 for stage in result.schedule.stages)
    position = {shard: i for i, shard in enumerate(order)}
    plan = result.plan
    checked = 0
    for number in range(1, len(plan)):
        level = plan.levels[number]
        for region in shard_regions(level.shape, level.shards):
            parent = (
                number,
                tuple(r.start // s for r, s in zip(region, level.shards, strict=True)),
            )
            stage = next(s for s in result.schedule.stages if number in s.levels)
            if number - 1 not in stage.levels:
                continue  # the level below was written by an earlier stage, already complete
            for child in child_regions(plan, number, region):
                below = plan.levels[number - 1]
                key = (
                    number - 1,
                    tuple(c.start // s for c, s in zip(child, below.shards, strict=True)),
                )
                assert position[key] < position[parent], f"{parent} recorded before child {key}"
                checked += 1
    assert checked > 0
    # A local store's shards are written by the tasks themselves, so none waits in memory.
    assert writing_threads == ({"cellvol-store"} if background else {"cellvol-write"})


def _log_syncs(monkeypatch: pytest.MonkeyPatch, events: list[str], lock: Any) -> None:
    """Log ``synced <path>`` for every file and directory synced to the disk, in order."""
    original = os.fsync

    def logging_fsync(descriptor: int) -> None:
        original(descriptor)
        with lock:
            events.append(f"synced {os.readlink(f'/proc/self/fd/{descriptor}')}")

    monkeypatch.setattr(os, "fsync", logging_fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_a_shard_is_on_the_disk_before_it_is_recorded_and_everything_before_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kill -9 leaves the page cache intact; a power cut does not. A record trusted on resume,
    # or a completion marker, must therefore only reach the disk after what it vouches for.
    import threading

    from cellvol._codec._keys import shard_object_key
    from cellvol.write._ledger import Ledger

    events: list[str] = []
    lock = threading.Lock()
    _log_syncs(monkeypatch, events, lock)
    original_record = Ledger.record

    def remember(self, level, index, nbytes):
        with lock:
            events.append(f"record {level}/{'.'.join(map(str, index))}")
        original_record(self, level, index, nbytes)

    monkeypatch.setattr(Ledger, "record", remember)
    dest = (tmp_path / "d.zarr").resolve()
    result = cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), dest, 2.0, **LAYOUT)

    def first(event: str) -> int:
        return events.index(event)

    recorded = 0
    for number, level in enumerate(result.plan.levels):
        grid = [-(-n // s) for n, s in zip(level.shape, level.shards, strict=True)]
        for index in np.ndindex(*grid):
            shard = dest / shard_object_key(level.path, index)
            record = first(f"record {number}/{'.'.join(map(str, index))}")
            assert first(f"synced {shard}") < record, shard
            assert first(f"synced {shard.parent}") < record, shard.parent
            recorded += 1
    assert recorded == result.shards_written
    complete = first(f"synced {dest / '_cellvol' / 'complete.json'}")
    for vouched in ("zarr.json", "0/zarr.json", "2/zarr.json", "_cellvol/manifest.json"):
        assert first(f"synced {dest / vouched}") < complete, vouched
    assert first(f"synced {dest}") < complete


def test_a_temporary_left_by_a_killed_worker_is_gone_when_the_write_finishes(
    tmp_path: Path, clean_build, cluster_client
) -> None:
    # A worker killed between writing a shard's file and renaming it leaves this name behind
    # while the rest of the cluster carries on; the write's end, not the next resume, removes it.
    dest = tmp_path / "w.zarr"
    left = dest / "0" / "c" / "0" / "0" / f"0.{'ef' * 16}.partial"

    def leave_one(event: cellvol.ProgressEvent) -> None:
        if event.stage == 0 and event.done == 1:
            left.parent.mkdir(parents=True, exist_ok=True)
            left.write_bytes(b"half a shard")

    cellvol.write_pyramid(
        SyntheticVolume(SHAPE, seed=7), dest, 2.0, client=cluster_client, progress=leave_one,
        **LAYOUT,
    )  # fmt: skip
    assert not left.exists()
    assert data_files(dest) == clean_build
    assert cellvol.verify(dest).problems == []
