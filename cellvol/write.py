"""The pyramid engine: stream a 3-D array into a multiscale OME-Zarr 0.5 image.

How a write proceeds (see :mod:`cellvol.plan` for the stages and :mod:`cellvol.ledger` for the
bookkeeping):

1. The parameters are recorded (``_cellvol/job.json``); the group and every level's array are
   created, without OME metadata.
2. Stage by stage, tasks run in parallel. A task owns one shard of its stage's top level and
   walks the shards below it depth first: a level-0 shard is read from the source, written,
   and folded into its parent's buffer by the downsampling kernel; a finished parent is
   written and folded into its own parent, and so on. Each input byte is read once, every
   shard is written whole by exactly one task, and a record is kept of each finished shard.
3. The OME-Zarr metadata is written, then the manifest, then the completion marker.

Calling :func:`write_pyramid` again with the same arguments resumes: finished shards (recorded,
and still of the recorded size) are read back instead of recomputed, everything else is written
again, and the result is byte-identical to an uninterrupted write. Different arguments are
refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import dask.array as da
import numpy as np
import numpy.typing as npt
import zarr

from cellvol.downsample import METHODS, Method, downsample
from cellvol.errors import InvalidInputError, WriteConflictError
from cellvol.ledger import Ledger, ShardKey, shard_object_key
from cellvol.metadata import image_attributes, provenance
from cellvol.plan import (
    DEFAULT_MEMORY_LIMIT,
    LevelPlan,
    PyramidPlan,
    Region,
    Schedule,
    StagePlan,
    child_regions,
    plan_pyramid,
    plan_schedule,
    shard_regions,
)
from cellvol.progress import ProgressCallback, ProgressReporter
from cellvol.shard import encode_shard, sharding_codecs
from cellvol.spec import SPATIAL_AXES, VoxelSize
from cellvol.storage import (
    delete_prefix,
    list_keys,
    open_store,
    parse_location,
    write_bytes,
)

__all__ = ["LazyArray", "WriteResult", "write_pyramid"]

# Element kinds a pyramid may hold: the integer and float types EM and X-ray volumes use.
_SUPPORTED_KINDS = "iuf"


class LazyArray(Protocol):
    """The minimal array contract a source must meet: shape, dtype and numpy-style slicing."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in voxels."""

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""

    def __getitem__(self, key: Any) -> Any:
        """Return the selected region as an array."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a call to :func:`write_pyramid` did.

    Attributes
    ----------
    url
        The image's location.
    plan, schedule
        The levels written and how the work was split.
    shards_written, shards_reused
        Shards computed by this call, and shards a previous interrupted call had finished.
    seconds
        Wall-clock time of this call.
    """

    url: str
    plan: PyramidPlan
    schedule: Schedule
    shards_written: int
    shards_reused: int
    seconds: float


def write_pyramid(
    source: npt.NDArray[Any] | da.Array | LazyArray,
    dest: str | os.PathLike[str],
    voxel_size: VoxelSize | float | Sequence[float],
    *,
    unit: str = "nanometer",
    method: Method = "mean",
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    n_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    compression_level: int = 3,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    workers: int | None = None,
    client: Any = None,
    name: str | None = None,
    source_description: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> WriteResult:
    """Write ``source`` as a multiscale OME-Zarr 0.5 image at ``dest``, or resume that write.

    Parameters
    ----------
    source
        A 3-D ``(z, y, x)`` numpy array (memory-mapped ones included), dask array, or any
        object with ``shape``, ``dtype`` and numpy-style slicing; it is read one level-0 shard
        at a time, each region once.
    dest
        Local path, ``file://`` or ``s3://bucket/key`` URL of the image group.
    voxel_size
        Level-0 voxel size: a :class:`~cellvol.spec.VoxelSize`, a scalar, or ``(z, y, x)``.
    unit
        Unit of ``voxel_size`` when it is not a VoxelSize (default nanometre).
    method
        Downsampling: ``mean`` for images, ``mode`` for labels, ``stride``, ``min``, ``max``.
    chunks, shards, n_levels, factors
        Layout overrides, see :func:`cellvol.plan.plan_pyramid`.
    compression_level
        zstd level of every chunk (1-22).
    memory_limit
        Bytes the running tasks may hold together (default 1 GiB); the schedule is planned to
        stay within it whatever the volume's size.
    workers
        Tasks to run at once on local threads (default: the number of CPUs); ignored with a
        ``client``.
    client
        A ``dask.distributed.Client``: run the tasks on its cluster instead of local threads.
        Workers reopen the source and the store themselves, so both must be reachable from
        them (a shared file system or S3) and the source must pickle.
    name
        The multiscale's name (default: the destination's name).
    source_description
        Recorded in the provenance block (default: a description of the source array).
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``anon``, ``key``/``secret``...).
    overwrite
        Delete whatever is at ``dest`` first. Without it, ``dest`` must be empty or hold an
        unfinished or finished write with the same parameters (which is resumed or kept).
    progress
        Called with a :class:`~cellvol.progress.ProgressEvent` as tasks finish, from the
        calling thread's pool threads or, with a client, from the calling thread.

    Returns
    -------
    WriteResult

    Raises
    ------
    InvalidInputError
        For a source that is not 3-D or has an unsupported dtype, or another bad argument.
    LayoutError
        For a layout or memory limit that cannot be honoured (raised before anything is
        written).
    WriteConflictError
        If ``dest`` holds something else, or a write with different parameters.
    """
    started = time.perf_counter()
    shape, dtype = _check_source(source)
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown downsampling method {method!r}; expected one of {', '.join(METHODS)}"
        )
    if not 1 <= compression_level <= 22:
        raise InvalidInputError(f"compression_level must be 1-22, got {compression_level}")
    voxel = VoxelSize.of(voxel_size, unit)
    plan = plan_pyramid(
        shape, voxel, chunks=chunks, shards=shards, n_levels=n_levels, factors=factors
    )
    threads = workers if workers is not None else (os.cpu_count() or 1)
    if threads < 1:
        raise InvalidInputError(f"workers must be at least 1, got {threads}")
    parallel = _cluster_threads(client) if client is not None else threads
    schedule = plan_schedule(plan, dtype.itemsize, memory_limit=memory_limit, workers=parallel)
    parameters = _parameters(plan, dtype, method, compression_level)
    parameters["source_sample"] = _source_sample(source, plan.levels[0])

    location = parse_location(dest)
    options = dict(storage_options or {})
    store = open_store(location.url, mode="a", storage_options=options)
    ledger = Ledger(store, location.url)
    if overwrite:
        delete_prefix(store, "")
    elif ledger.job() is None:
        _refuse_foreign_content(store, location.url)
        _remove_interrupted_temporaries(store)
    else:
        ledger.check_same(parameters)
        if ledger.is_complete():
            return WriteResult(location.url, plan, schedule, 0, 0, time.perf_counter() - started)
        _remove_interrupted_temporaries(store)

    if ledger.job() is None:
        ledger.begin(parameters)
    group = zarr.open_group(store=store, mode="a", zarr_format=3)
    for level in plan.levels:
        if level.path not in group:
            _create_level(group, level, dtype, compression_level)

    finished = ledger.finished()
    job = _Job(
        url=location.url,
        storage_options=options,
        plan=plan,
        method=method,
        compression_level=compression_level,
        source=_portable(source),
    )
    written = reused = 0
    context = _Context(job, store)
    try:
        for stage in schedule.stages:
            done_here, reused_here = _run_stage(
                job, stage, finished, client, threads, progress, context
            )
            written += done_here
            reused += reused_here
    finally:
        context.writers.shutdown()

    record = provenance(source_description or _describe(source), parameters)
    attributes = image_attributes(
        plan, name=name or location.name, method=method, provenance_record=record
    )
    group.attrs.update(json.loads(json.dumps(attributes)))
    ledger.write_manifest(_manifest(ledger, plan))
    elapsed = time.perf_counter() - started
    ledger.mark_complete({"shards_written": written, "shards_reused": reused})
    return WriteResult(location.url, plan, schedule, written, reused, elapsed)


# -- checks ------------------------------------------------------------------------------------


def _check_source(source: object) -> tuple[tuple[int, ...], np.dtype[Any]]:
    shape = getattr(source, "shape", None)
    dtype = getattr(source, "dtype", None)
    if shape is None or dtype is None or not hasattr(source, "__getitem__"):
        raise InvalidInputError(
            f"source must be an array with shape, dtype and slicing; got {type(source).__name__}"
        )
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise InvalidInputError(f"source must be 3-D (z, y, x); got shape {shape} ({len(shape)}-D)")
    if any(n == 0 for n in shape):
        raise InvalidInputError(f"source has an empty axis: shape {shape}")
    dtype = np.dtype(dtype)
    if dtype.kind not in _SUPPORTED_KINDS or dtype.itemsize > 8:
        raise InvalidInputError(
            f"source dtype {dtype} is not supported; expected an integer or float type"
        )
    return shape, dtype


def _parameters(
    plan: PyramidPlan, dtype: np.dtype[Any], method: str, compression_level: int
) -> dict[str, Any]:
    """Everything that decides the bytes written; a resumed write must match it exactly."""
    return {
        "dtype": str(dtype),
        "voxel_size": list(plan.voxel_size.zyx),
        "unit": plan.voxel_size.unit,
        "method": method,
        "compression": {"codec": "zstd", "level": compression_level, "checksum": "crc32c"},
        "levels": [
            {
                "path": level.path,
                "shape": list(level.shape),
                "factors": list(level.factors),
                "chunks": list(level.chunks),
                "shards": list(level.shards),
            }
            for level in plan.levels
        ],
    }


def _source_sample(source: Any, level0: LevelPlan) -> str:
    """A digest of the source's first and last chunk.

    Cheap, and enough to tell a resume of the same data from a write of different data with
    the same shape into the same place.
    """
    digest = hashlib.sha256()
    for corner in ("first", "last"):
        region = tuple(
            slice(0, c) if corner == "first" else slice(max(n - c, 0), n)
            for n, c in zip(level0.shape, level0.chunks, strict=True)
        )
        digest.update(np.ascontiguousarray(_read_source(source, region)).tobytes())
    return digest.hexdigest()[:32]


def _refuse_existing_node(store: Any, url: str) -> None:
    try:
        node = zarr.open(store=store, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.NodeTypeValidationError):
        return
    kind = "group" if isinstance(node, zarr.Group) else "array"
    raise WriteConflictError(
        f"{url} already holds a zarr {kind} that cellvol did not start; pass overwrite=True "
        "to replace it"
    )


# zarr's local store writes "<stem>.<32 hex digits>.partial" and renames it into place; a
# process killed in between leaves one behind.
_INTERRUPTED_TEMPORARY = re.compile(r"\.[0-9a-f]{32}\.partial$")


def _remove_interrupted_temporaries(store: Any) -> None:
    for key in list_keys(store, ""):
        if _INTERRUPTED_TEMPORARY.search(key):
            delete_prefix(store, key)


def _refuse_foreign_content(store: Any, url: str) -> None:
    _refuse_existing_node(store, url)
    if any(not _INTERRUPTED_TEMPORARY.search(key) for key in list_keys(store, "")):
        raise WriteConflictError(
            f"{url} is not empty and holds no cellvol write; pass overwrite=True to replace it"
        )


def _create_level(
    group: zarr.Group, level: LevelPlan, dtype: np.dtype[Any], compression_level: int
) -> None:
    group.create_array(
        name=level.path,
        shape=level.shape,
        dtype=dtype,
        chunks=level.chunks,
        shards=level.shards,
        fill_value=0,
        # What cellvol.shard.encode_shard writes; zarr itself only writes the metadata.
        **sharding_codecs(compression_level),
        dimension_names=SPATIAL_AXES,
        # Store every chunk, even uniform ones, so a missing chunk always means damage.
        config={"write_empty_chunks": True},
        overwrite=True,
    )


# -- the job a task runs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    """What every task needs; pickles small, so tasks can run in other processes."""

    url: str
    storage_options: Mapping[str, Any]
    plan: PyramidPlan
    method: Method
    compression_level: int
    source: Any


class _Context:
    """A process's open handles for a job: its store, level arrays and ledger."""

    def __init__(self, job: _Job, store: Any) -> None:
        self.store = store
        self.ledger = Ledger(store, job.url)
        # Stores run I/O, not compute: a few threads overlap it with the tasks' work.
        self.writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cellvol-store")
        group = zarr.open_group(store=store, mode="r+", zarr_format=3)
        self.arrays: list[zarr.Array[Any]] = []
        for level in job.plan.levels:
            array = group[level.path]
            if not isinstance(array, zarr.Array):
                raise WriteConflictError(f"{job.url}: level {level.path!r} is not an array")
            self.arrays.append(array)


@functools.lru_cache(maxsize=8)
def _worker_context(job_key: str) -> _Context:
    job: _Job = _JOBS[job_key]
    return _Context(job, open_store(job.url, mode="r+", storage_options=job.storage_options))


# Jobs by key, so a worker process opens the store once per job, not once per task.
_JOBS: dict[str, _Job] = {}


def _task_on_worker(job: _Job, stage: StagePlan, region: Region, reuse: dict[ShardKey, int]) -> int:
    key = f"{job.url}|{json.dumps(job.storage_options, sort_keys=True, default=str)}"
    _JOBS.setdefault(key, job)
    return _run_task(job, _worker_context(key), stage, region, reuse)


def _run_task(
    job: _Job, context: _Context, stage: StagePlan, region: Region, reuse: dict[ShardKey, int]
) -> int:
    """Produce one shard of the stage's top level and everything below it; return bytes read."""
    plan = job.plan
    nbytes_read = 0

    def obtain(level: int, shard: Region) -> npt.NDArray[Any]:
        nonlocal nbytes_read
        array = context.arrays[level]
        if level == stage.base:
            data = np.asarray(array[shard])
            nbytes_read += data.nbytes
            return data
        index = _shard_index(shard, plan.levels[level].shards)
        recorded = reuse.get((level, index))
        if recorded is not None:
            if context.ledger.still_intact(plan.levels[level].path, index, recorded):
                return np.asarray(array[shard])
            context.ledger.forget(level, index, recorded)  # torn or replaced: write it again
        if level == 0:
            data = _read_source(job.source, shard)
            nbytes_read += data.nbytes
        else:
            data = _fold_children(level, shard, obtain, plan, job.method, array.dtype)
        layout = plan.levels[level]
        encoded = encode_shard(data, layout.chunks, layout.shards, job.compression_level)
        writer.submit(level, index, shard_object_key(layout.path, index), encoded)
        return data

    writer = _ShardWriter(context)
    try:
        obtain(stage.top, region)
    finally:
        writer.finish()
    return nbytes_read


class _ShardWriter:
    """Stores a task's encoded shards in the background, so the task keeps computing.

    At most ``in_flight`` shards wait to be stored (each holds its encoded bytes); a shard's
    record is written only after the shard itself has been stored.
    """

    def __init__(self, context: _Context, in_flight: int = 2) -> None:
        self._context = context
        self._in_flight = in_flight
        self._pending: deque[Future[None]] = deque()

    def submit(self, level: int, index: tuple[int, ...], key: str, encoded: bytes) -> None:
        self._pending.append(self._context.writers.submit(self._store, level, index, key, encoded))
        while len(self._pending) > self._in_flight:
            self._pending.popleft().result()

    def _store(self, level: int, index: tuple[int, ...], key: str, encoded: bytes) -> None:
        write_bytes(self._context.store, key, encoded)
        self._context.ledger.record(level, index, len(encoded))

    def finish(self) -> None:
        """Wait for every submitted shard; re-raise the first failure."""
        failures = []
        while self._pending:
            try:
                self._pending.popleft().result()
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


def _shard_index(region: Region, shards: Sequence[int]) -> tuple[int, ...]:
    return tuple(r.start // s for r, s in zip(region, shards, strict=True))


def _read_source(source: Any, region: Region) -> npt.NDArray[Any]:
    if isinstance(source, da.Array):
        # Synchronously in this task's thread: the tasks themselves are the parallelism.
        block = source[region].compute(scheduler="synchronous")
    else:
        block = source[region]
    data = np.asarray(block)
    expected = tuple(r.stop - r.start for r in region)
    if data.shape != expected:
        raise InvalidInputError(
            f"source returned shape {data.shape} for region {region}; expected {expected}"
        )
    return data


# -- running a stage ---------------------------------------------------------------------------


def _run_stage(
    job: _Job,
    stage: StagePlan,
    finished: Mapping[ShardKey, int],
    client: Any,
    threads: int,
    progress: ProgressCallback | None,
    context: _Context,
) -> tuple[int, int]:
    plan = job.plan
    top = plan.levels[stage.top]
    regions = list(shard_regions(top.shape, top.shards))
    by_task = _records_by_task(plan, stage, finished)
    pending = []
    for region in regions:
        index = _shard_index(region, top.shards)
        recorded = finished.get((stage.top, index))
        # A finished top shard is skipped only if its object is still whole; otherwise its
        # task runs, finds the record stale, and writes the shard again.
        if recorded is None or not context.ledger.still_intact(top.path, index, recorded):
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
    plan: PyramidPlan, stage: StagePlan, finished: Mapping[ShardKey, int]
) -> dict[tuple[int, ...], dict[ShardKey, int]]:
    """Group the finished shards of a stage's levels by the top-level shard that contains them."""
    grouped: dict[tuple[int, ...], dict[ShardKey, int]] = {}
    top = plan.levels[stage.top]
    for (level, index), nbytes in finished.items():
        if level not in stage.levels:
            continue
        scale = [1] * len(index)
        for k in range(level + 1, stage.top + 1):
            scale = [s * f for s, f in zip(scale, plan.levels[k].factors, strict=True)]
        start = [i * s for i, s in zip(index, plan.levels[level].shards, strict=True)]
        owner = tuple((p // c) // t for p, c, t in zip(start, scale, top.shards, strict=True))
        grouped.setdefault(owner, {})[(level, index)] = nbytes
    return grouped


def _run_on_threads(
    job: _Job,
    stage: StagePlan,
    pending: list[tuple[Region, dict[ShardKey, int]]],
    context: _Context,
    threads: int,
    reporter: ProgressReporter,
) -> None:
    def one(region: Region, reuse: dict[ShardKey, int]) -> None:
        reporter.advance(_run_task(job, context, stage, region, reuse))

    # Submit lazily, keeping `threads` tasks in flight: memory stays bounded and a failure
    # stops the write after the tasks already running, not after every queued one.
    work: Iterator[tuple[Region, dict[ShardKey, int]]] = iter(pending)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cellvol-write") as pool:
        running: set[Future[None]] = set()
        for region, reuse in work:
            running.add(pool.submit(one, region, reuse))
            if len(running) >= threads:
                running = _wait_first(running)
        while running:
            running = _wait_first(running)


def _wait_first(running: set[Future[None]]) -> set[Future[None]]:
    """Wait until a task ends; re-raise its failure here, in the caller's thread."""
    done, still = wait(running, return_when=FIRST_EXCEPTION)
    for future in done:
        future.result()
    return still


def _run_on_cluster(
    job: _Job,
    stage: StagePlan,
    pending: list[tuple[Region, dict[ShardKey, int]]],
    client: Any,
    reporter: ProgressReporter,
) -> None:
    from distributed import as_completed

    futures = [
        client.submit(_task_on_worker, job, stage, region, reuse, pure=False)
        for region, reuse in pending
    ]
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            reporter.advance(int(future.result()))
    except BaseException:
        client.cancel(futures)
        raise


def _cluster_threads(client: Any) -> int:
    try:
        return max(1, int(sum(client.nthreads().values())))
    except Exception:  # a client without workers yet: plan for one
        return 1


# -- sources that travel -----------------------------------------------------------------------


@dataclass(frozen=True)  # not slotted: the opened map is cached on the instance
class _MemmapSource:
    """A memory-mapped array by file name, so it pickles as a reference, not as its data."""

    filename: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    order: Literal["C", "F"]

    @functools.cached_property
    def _array(self) -> npt.NDArray[Any]:
        return np.memmap(
            self.filename,
            dtype=np.dtype(self.dtype),
            mode="r",
            shape=self.shape,
            offset=self.offset,
            order=self.order,
        )

    def __getitem__(self, key: Any) -> Any:
        return self._array[key]


def _portable(source: Any) -> Any:
    """Replace a memory-mapped array by a reference that workers reopen.

    Only the mapping itself qualifies (its ``base`` is the ``mmap`` object): numpy views of a
    memmap are memmaps too and keep the parent's file name and offset, so they travel as
    ordinary arrays rather than be reopened as the wrong region.
    """
    if (
        isinstance(source, np.memmap)
        and isinstance(getattr(source, "base", None), mmap.mmap)
        and source.filename
        and (source.flags.c_contiguous or source.flags.f_contiguous)
    ):
        return _MemmapSource(
            str(source.filename),
            str(source.dtype),
            tuple(source.shape),
            int(source.offset),
            "C" if source.flags.c_contiguous else "F",
        )
    return source


# -- the end of a write ------------------------------------------------------------------------


def _manifest(ledger: Ledger, plan: PyramidPlan) -> dict[str, dict[str, int]]:
    """Every shard of every level with its size, from the records; all must be there."""
    finished = ledger.finished()
    levels: dict[str, dict[str, int]] = {}
    for number, level in enumerate(plan.levels):
        counts = [-(-n // s) for n, s in zip(level.shape, level.shards, strict=True)]
        entries: dict[str, int] = {}
        for index in np.ndindex(*counts):
            size = finished.get((number, tuple(index)))
            if size is None:
                raise OSError(
                    f"{ledger.url}: shard {shard_object_key(level.path, index)} has no record "
                    "after every task finished"
                )
            entries[".".join(map(str, index))] = size
        levels[level.path] = entries
    return levels


def _describe(source: object) -> str:
    kind = f"{type(source).__module__.split('.')[0]}.{type(source).__name__}"
    shape = tuple(getattr(source, "shape", ()))
    return f"{kind} of shape {shape} and dtype {getattr(source, 'dtype', '?')}"
