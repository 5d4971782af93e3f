"""What runs inside a pyramid write: tasks, their per-process handles, and the runners.

A :class:`Job` holds everything a task needs and pickles small. :func:`run_task` produces one
shard of a stage's top level and every shard beneath it, depth first (see
:mod:`cellvol.write` for the whole write and ``docs/pyramid.md`` for the design).
:func:`run_stage` runs a stage's tasks on local threads or on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import contextlib
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store

from cellvol._codec._cache import ChunkCache
from cellvol._codec._keys import shard_object_key
from cellvol._codec._layout import chunk_layout
from cellvol._codec._reader import ChunkReader
from cellvol._codec._shard import CRC_BYTES, encode_shard, parts_fingerprint
from cellvol._store import is_local_store, make_durable, open_store, write_bytes
from cellvol.errors import WriteConflictError
from cellvol.ome._digests import sha256_hex
from cellvol.progress import ProgressCallback, ProgressReporter
from cellvol.write._downsample import Method, downsample
from cellvol.write._inputs import read_source
from cellvol.write._ledger import Ledger, ShardKey, ShardRecord
from cellvol.write._mapped import keeping_mapped, release_mapped
from cellvol.write._plan import (
    LevelPlan,
    PyramidPlan,
    Region,
    StagePlan,
    child_regions,
    shard_regions,
)
from cellvol.write._resume import input_digest

if TYPE_CHECKING:
    from distributed import Client


__all__ = [
    "Job",
    "SyncingRecords",
    "TaskContext",
    "cluster_threads",
    "forget_job_on_workers",
    "run_stage",
    "run_task",
    "shard_index",
]


@dataclass(frozen=True, slots=True)
class Job:
    """What every task needs; pickles small, so tasks can run in other processes.

    ``token`` tells one call of the write from another: a cluster's workers keep each job's
    open store and arrays between its tasks, and a later write to the same place, with
    another layout or other data, must not run on what they kept.

    ``keep_mapped`` is what the memory limit leaves beside the tasks' buffers: bytes of a
    memory-mapped input a process may keep mapped between reads (:mod:`cellvol.write._mapped`).
    """

    url: str
    storage_options: Mapping[str, Any]
    plan: PyramidPlan
    method: Method
    source: Any
    keep_mapped: int = 0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class TaskContext:
    """A process's open handles for a job: its store, level arrays and ledger."""

    def __init__(self, job: Job, store: Store) -> None:
        self.store = store
        self.ledger = Ledger(store, job.url)
        # An object store answers each PUT after a round trip, which a few background
        # threads overlap with the tasks' work. A local file is written in the task's own
        # thread: the kernel's page cache already lets the task go on while the disk catches
        # up, and shards queued here as well only raised the peak memory when the disk fell
        # behind (see _ShardWriter). The pool starts no thread until it is first used.
        self.writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cellvol-store")
        local = is_local_store(store)
        self.shards_in_flight = 0 if local else 2
        # A local file is in the page cache when written, and only on the disk once synced:
        # its record waits for that, so a resume after a power cut never trusts a lost shard.
        # The syncs run on the writer threads, overlapping the tasks' work; they hold no data.
        self.sync_before_record = local
        # Records of this process's tasks still syncing after their tasks ended: a task's
        # thread goes on to the next task while its last shards sync, and the stage's runner
        # waits for them at the end of the stage.
        self.syncing = SyncingRecords()
        group = zarr.open_group(store=store, mode="r+", zarr_format=3)
        self.arrays: list[zarr.Array[Any]] = []
        # Levels written earlier are read back (a stage's base, shards kept on resume) through
        # the direct chunk reader: about twice as fast as zarr's own decoding.
        self.readers: list[ChunkReader] = []
        for level in job.plan.levels:
            array = group[level.path]
            layout = chunk_layout(array) if isinstance(array, zarr.Array) else None
            if not isinstance(array, zarr.Array) or layout is None:
                raise WriteConflictError(
                    f"{job.url}: level {level.path!r} is not an array in cellvol's layout"
                )
            self.arrays.append(array)
            self.readers.append(
                ChunkReader(array.store_path, layout, ChunkCache(0), job.url, level.path)
            )


def _worker_context(job_key: str) -> TaskContext:
    """The calling worker process's handles for a job, opened by its first task there."""
    with _WORKER_LOCK:
        context = _CONTEXTS.get(job_key)
        if context is None:
            job = _JOBS[job_key]
            store = open_store(job.url, mode="r+", storage_options=job.storage_options)
            context = _CONTEXTS[job_key] = TaskContext(job, store)
        return context


# A worker's jobs and their open handles, by job key, so that a worker opens the store once
# per job rather than once per task; dropped when the write ends (forget_job_on_workers).
_JOBS: dict[str, Job] = {}
_CONTEXTS: dict[str, TaskContext] = {}
_WORKER_LOCK = threading.Lock()


def _job_key(job: Job) -> str:
    return f"{job.url}|{job.token}"


def _task_on_worker(
    job: Job, stage: StagePlan, region: Region, reuse: dict[ShardKey, ShardRecord]
) -> int:
    key = _job_key(job)
    with _WORKER_LOCK:
        _JOBS.setdefault(key, job)
    context = _worker_context(key)
    context.syncing.drop_finished()
    return run_task(job, context, stage, region, reuse)


def _wait_for_worker_records(job_key: str) -> None:
    """On a worker: wait until every record of its tasks of this job is written."""
    if job_key in _JOBS:  # a worker that ran none of the job's tasks has none
        _worker_context(job_key).syncing.wait()
    release_mapped()


def _forget_job(job_key: str) -> None:
    """On a worker: close and drop a finished (or failed) job's handles."""
    with _WORKER_LOCK:
        _JOBS.pop(job_key, None)
        context = _CONTEXTS.pop(job_key, None)
    if context is not None:
        context.syncing.wait(reraise=False)
        context.writers.shutdown()
    release_mapped()  # a failed stage's input pages too


def forget_job_on_workers(client: Client, job: Job) -> None:
    """Have every worker of ``client`` drop what it kept open for ``job``."""
    client.run(_forget_job, _job_key(job))


def run_task(
    job: Job,
    context: TaskContext,
    stage: StagePlan,
    region: Region,
    reuse: dict[ShardKey, ShardRecord],
) -> int:
    """Produce one shard of the stage's top level and everything below it; return bytes read.

    Records still waiting for their shard's sync when the task ends are left in
    ``context.syncing``, for the stage's runner to wait for.
    """
    plan = job.plan
    nbytes_read = 0

    def obtain(level: int, shard: Region) -> npt.NDArray[Any]:
        nonlocal nbytes_read
        array = context.arrays[level]
        written = context.readers[level]
        if level == stage.base:
            data = written.read([(s.start, s.stop) for s in shard])
            nbytes_read += data.nbytes
            return data
        index = shard_index(shard, plan.levels[level].shards)
        recorded = reuse.get((level, index))
        if recorded is not None:
            layout = plan.levels[level]
            if context.ledger.still_intact(layout.path, index, recorded, tail_nbytes(layout)):
                return written.read([(s.start, s.stop) for s in shard])
            context.ledger.forget(level, index, recorded)  # torn or replaced: write it again
        input_crc = None
        if level == 0:
            data = read_source(job.source, shard)
            nbytes_read += data.nbytes
            input_crc = input_digest(data)
        else:
            data = _fold_children(level, shard, obtain, plan, job.method, array.dtype)
        layout = plan.levels[level]
        encoded = encode_shard(data, layout.chunks, layout.shards, layout.compression)
        writer.submit(level, index, shard_object_key(layout.path, index), encoded, input_crc)
        return data

    writer = _ShardWriter(context, context.shards_in_flight)
    try:
        with keeping_mapped(job.keep_mapped):
            obtain(stage.top, region)
    finally:
        writer.finish()
    return nbytes_read


# Shards a task may have written but not yet synced and recorded.
_SYNCS_AHEAD = 4


class SyncingRecords:
    """Records still syncing after their tasks ended, for the stage's runner to wait for.

    Finished ones are dropped as tasks end, so what is held stays small whatever the
    volume's size.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: list[Future[None]] = []

    def add(self, futures: Iterable[Future[None]]) -> None:
        """Keep ``futures`` (records of a task that has ended) until they are written."""
        with self._lock:
            self._futures.extend(futures)

    def drop_finished(self) -> None:
        """Forget the records already written; re-raise the first failure among them."""
        still: list[Future[None]] = []
        finished: list[Future[None]] = []
        with self._lock:
            for future in self._futures:
                (finished if future.done() else still).append(future)
            self._futures = still
        for future in finished:
            future.result()

    def wait(self, reraise: bool = True) -> None:
        """Wait for every record; re-raise the first failure unless told not to."""
        with self._lock:
            futures, self._futures = self._futures, []
        wait(futures)
        if reraise:
            for future in futures:
                future.result()


class _ShardWriter:
    """Stores a task's encoded shards, in the background if ``in_flight`` allows.

    At most ``in_flight`` shards wait to be stored (each holds its encoded bytes); with none,
    each shard is stored in the task's thread before the task goes on. Queued shards cost
    memory exactly when the store is slower than the task (``docs/pyramid.md#memory``).

    A shard's record is written only after the shard itself has been stored (and, in a local
    store, synced to the disk), and a parent is recorded only after all its children:
    records then always describe a complete subtree, which is what lets a resume skip a
    recorded top shard without looking beneath it.
    """

    def __init__(self, context: TaskContext, in_flight: int) -> None:
        self._context = context
        self._in_flight = in_flight
        self._pending: deque[tuple[int, Future[None]]] = deque()
        self._records: deque[Future[None]] = deque()

    def submit(
        self,
        level: int,
        index: tuple[int, ...],
        key: str,
        encoded: list[bytes],
        input_crc: str | None,
    ) -> None:
        if self._in_flight == 0:
            self._store(level, index, key, encoded, input_crc)
            return
        # Shards arrive children first (depth first), so a finer pending shard is a child.
        if any(pending_level < level for pending_level, _ in self._pending):
            self.finish()
        future = self._context.writers.submit(self._store, level, index, key, encoded, input_crc)
        self._pending.append((level, future))
        while len(self._pending) > self._in_flight:
            self._pending.popleft()[1].result()

    def _store(
        self,
        level: int,
        index: tuple[int, ...],
        key: str,
        encoded: list[bytes],
        input_crc: str | None,
    ) -> None:
        context = self._context
        # The SHA-256 here, on the thread that stores the shard: on an object store a writer
        # thread, and hashlib releases the GIL while it hashes, so the tasks go on meanwhile.
        record = ShardRecord(
            sum(len(part) for part in encoded),
            parts_fingerprint(encoded).hex(),
            sha256_hex(encoded),
            input_crc,
        )
        write_bytes(context.store, key, encoded, record.sha256)
        if not context.sync_before_record:
            context.ledger.record(level, index, record)
            return
        previous = self._records[-1] if self._records else None
        self._records.append(
            context.writers.submit(self._sync_and_record, level, index, key, record, previous)
        )
        # A task runs at most a few syncs ahead of the disk: kept unbounded, the waiting
        # records of a disk-bound 16 GiB build added 20 MiB to its peak, and would grow with
        # the volume.
        while self._records and (self._records[0].done() or len(self._records) > _SYNCS_AHEAD):
            self._records.popleft().result()

    def _sync_and_record(
        self,
        level: int,
        index: tuple[int, ...],
        key: str,
        record: ShardRecord,
        previous: Future[None] | None,
    ) -> None:
        make_durable(self._context.store, [key])
        # Records keep the order the shards were stored in, children before parents. The
        # previous sync was queued first on the same first-in first-out pool, so it is
        # running or done: waiting for it cannot deadlock.
        if previous is not None:
            previous.result()
        self._context.ledger.record(level, index, record)

    def finish(self) -> None:
        """Wait for every submitted shard; re-raise the first failure.

        Records still syncing are handed to ``context.syncing``, which the stage's runner
        waits for.
        """
        self._context.syncing.add(self._records)
        self._records.clear()
        failures = []
        while self._pending:
            try:
                self._pending.popleft()[1].result()
            except Exception as exc:  # keep waiting: no write may outlive its task
                failures.append(exc)
        if failures:
            raise failures[0]


def _fold_children(
    level: int,
    shard: Region,
    obtain: Callable[[int, Region], npt.NDArray[Any]],
    plan: PyramidPlan,
    method: Method,
    dtype: Any,
) -> npt.NDArray[Any]:
    factors = plan.levels[level].factors
    out = np.empty(tuple(s.stop - s.start for s in shard), dtype=dtype)
    for child in child_regions(plan, level, shard):
        reduced = downsample(obtain(level - 1, child), factors, method)
        target = tuple(
            slice(c.start // f - s.start, c.start // f - s.start + n)
            for c, f, s, n in zip(child, factors, shard, reduced.shape, strict=True)
        )
        out[target] = reduced
    return out


def tail_nbytes(level: LevelPlan) -> int:
    """The bytes that end each of a level's shards and hold its fingerprint: index and 4."""
    chunks_per_shard = math.prod(s // c for s, c in zip(level.shards, level.chunks, strict=True))
    return chunks_per_shard * 16 + 2 * CRC_BYTES  # offset and length per chunk, two CRCs


def shard_index(region: Region, shards: Sequence[int]) -> tuple[int, ...]:
    """The position in the shard grid of the shard that starts ``region``."""
    return tuple(r.start // s for r, s in zip(region, shards, strict=True))


# -- running a stage ---------------------------------------------------------------------------


def run_stage(
    job: Job,
    stage: StagePlan,
    finished: Mapping[ShardKey, ShardRecord],
    client: Client | None,
    threads: int,
    progress: ProgressCallback | None,
    context: TaskContext,
) -> tuple[int, int]:
    """Run a stage's pending tasks; return shards written and shards reused."""
    plan = job.plan
    top = plan.levels[stage.top]
    regions = list(shard_regions(top.shape, top.shards))
    by_task = _records_by_task(plan, stage, finished)
    pending = []
    for region in regions:
        index = shard_index(region, top.shards)
        recorded = finished.get((stage.top, index))
        # A finished top shard is skipped only if its object is still whole; otherwise its
        # task runs, finds the record stale, and writes the shard again.
        if recorded is None or not context.ledger.still_intact(
            top.path, index, recorded, tail_nbytes(top)
        ):
            pending.append((region, by_task.get(index, {})))
    reporter = ProgressReporter(progress, stage.index, stage.levels, len(regions))
    reporter.start(already_done=len(regions) - len(pending))
    if client is None:
        _run_on_threads(job, stage, pending, context, min(threads, stage.workers), reporter)
    else:
        _run_on_cluster(job, stage, pending, client, reporter)
    shards_in_stage = sum(plan.levels[level].n_shards for level in stage.levels)
    reused = sum(1 for (level, _) in finished if level in stage.levels)
    return shards_in_stage - reused, reused


def _records_by_task(
    plan: PyramidPlan, stage: StagePlan, finished: Mapping[ShardKey, ShardRecord]
) -> dict[tuple[int, ...], dict[ShardKey, ShardRecord]]:
    """Group the finished shards of a stage's levels by the top-level shard that contains them."""
    grouped: dict[tuple[int, ...], dict[ShardKey, ShardRecord]] = {}
    top = plan.levels[stage.top]
    for (level, index), record in finished.items():
        if level not in stage.levels:
            continue
        scale = [1] * len(index)
        for k in range(level + 1, stage.top + 1):
            scale = [s * f for s, f in zip(scale, plan.levels[k].factors, strict=True)]
        start = [i * s for i, s in zip(index, plan.levels[level].shards, strict=True)]
        owner = tuple((p // c) // t for p, c, t in zip(start, scale, top.shards, strict=True))
        grouped.setdefault(owner, {})[(level, index)] = record
    return grouped


def _run_on_threads(
    job: Job,
    stage: StagePlan,
    pending: list[tuple[Region, dict[ShardKey, ShardRecord]]],
    context: TaskContext,
    threads: int,
    reporter: ProgressReporter,
) -> None:
    syncing = context.syncing

    def one(region: Region, reuse: dict[ShardKey, ShardRecord]) -> None:
        reporter.advance(run_task(job, context, stage, region, reuse))

    # Submit lazily, keeping `threads` tasks in flight: memory stays bounded and a failure
    # stops the write after the tasks already running, not after every queued one.
    work: Iterator[tuple[Region, dict[ShardKey, ShardRecord]]] = iter(pending)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cellvol-write") as pool:
            running: set[Future[None]] = set()
            for region, reuse in work:
                running.add(pool.submit(one, region, reuse))
                if len(running) >= threads:
                    running = _wait_first(running)
                    syncing.drop_finished()
            while running:
                running = _wait_first(running)
    except BaseException:
        syncing.wait(reraise=False)  # no record may be written after its stage has ended
        raise
    finally:
        release_mapped()  # no input page stays mapped past its stage
    syncing.wait()


def _wait_first(running: set[Future[None]]) -> set[Future[None]]:
    """Wait until a task ends; re-raise its failure here, in the caller's thread."""
    done, still = wait(running, return_when=FIRST_EXCEPTION)
    for future in done:
        future.result()
    return still


def _run_on_cluster(
    job: Job,
    stage: StagePlan,
    pending: list[tuple[Region, dict[ShardKey, ShardRecord]]],
    client: Client,
    reporter: ProgressReporter,
) -> None:
    from distributed import as_completed
    from distributed import wait as distributed_wait

    futures = [
        client.submit(_task_on_worker, job, stage, region, reuse, pure=False)
        for region, reuse in pending
    ]
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            reporter.advance(int(future.result()))
    except BaseException:
        client.cancel(futures)  # type: ignore[no-untyped-call]
        # Cancelling stops queued tasks, not running ones: wait for those to end, so that no
        # task of this write stores a shard or a record after the write (and its lease) ends.
        with contextlib.suppress(Exception):
            distributed_wait(futures)  # type: ignore[no-untyped-call]
        raise
    # Every worker's records of this stage are written before the stage ends.
    client.run(_wait_for_worker_records, _job_key(job))


def cluster_threads(client: Client) -> int:
    """How many tasks a distributed client's workers run at once."""
    try:
        return max(1, int(sum(client.nthreads().values())))  # type: ignore[no-untyped-call]
    except Exception:  # a client without workers yet: plan for one
        return 1
