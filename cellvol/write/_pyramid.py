"""The pyramid engine: stream a 3-D array (or one with channels and time points) into OME-Zarr.

How a write proceeds (see ``_plan`` for the stages and ``_ledger`` for the bookkeeping):

1. The parameters are recorded (``_cellvol/job.json``); the group and every level's array are
   created, without OME metadata.
2. Stage by stage, tasks run in parallel. A task owns one shard of its stage's top level and
   walks the shards below it depth first: a level-0 shard is read from the source, written,
   and folded into its parent's buffer by the downsampling kernel; a finished parent is
   written and folded into its own parent, and so on. Each input byte is read once, every
   shard is written whole by exactly one task, and a record is kept of each finished shard.
3. The manifest is written, then the OME-Zarr metadata, the RO-Crate metadata that describes
   them for archives (``cellvol.ome._crate``), the digests of every object
   (``_cellvol/digests.json``), and last the completion marker.

Calling :func:`write_pyramid` again with the same arguments resumes: finished shards (recorded,
and still of the recorded size) are read back instead of recomputed, everything else is written
again, and the result is byte-identical to an uninterrupted write. Different arguments are
refused.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store

from cellvol._codec._shard import sharding_codecs
from cellvol._store import (
    delete_all_but,
    delete_prefix,
    is_local_store,
    list_keys,
    make_durable,
    open_store,
    parse_location,
)
from cellvol._store._lease import take_lease
from cellvol._store._nodes import open_node
from cellvol.errors import (
    InvalidInputError,
    MetadataError,
    NotOMEZarrError,
    OutOfSpaceError,
    WriteConflictError,
)
from cellvol.ome._crate import CRATE_KEY, write_crate
from cellvol.ome._display import omero_metadata
from cellvol.ome._manifest import LEASE_KEY
from cellvol.ome._metadata import Dataset, image_attributes, provenance, stored_attributes
from cellvol.progress import ProgressCallback
from cellvol.units import VoxelSize, check_placement
from cellvol.write._channels import channel_displays, image_axes
from cellvol.write._digests import end_records, metadata_digests, write_digests
from cellvol.write._downsample import METHODS, Method
from cellvol.write._inputs import portable, read_source
from cellvol.write._ledger import Ledger
from cellvol.write._plan import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_UNCOMPRESSED_FRACTION,
    LevelPlan,
    PyramidPlan,
    Schedule,
    plan_pyramid,
    plan_schedule,
    with_leading_axes,
)
from cellvol.write._resume import prove_inputs
from cellvol.write._tasks import (
    Job,
    TaskContext,
    cluster_threads,
    forget_job_on_workers,
    run_stage,
)

if TYPE_CHECKING:
    # Only named in annotations: importing dask takes about a second, and a write from numpy
    # or a file never needs it.
    import dask.array as da
    from distributed import Client

__all__ = ["LazyArray", "WriteResult", "supported_dtype", "write_pyramid"]


def supported_dtype(dtype: np.dtype[Any]) -> bool:
    """Whether a pyramid can hold this element type: the integers and floats EM and X-ray use."""
    return dtype.kind in "iuf" and dtype.itemsize <= 8


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


def _out_of_space_named[**P](write: Callable[P, WriteResult]) -> Callable[P, WriteResult]:
    """Turn a full disk or quota, wherever in a write it strikes, into one clear error.

    The write keeps its finished shards, so the message says to resume once there is space.
    """

    @functools.wraps(write)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> WriteResult:
        try:
            return write(*args, **kwargs)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            dest = kwargs.get("dest", args[1] if len(args) > 1 else "the destination")
            where = f" while writing {exc.filename}" if exc.filename else ""
            error = OutOfSpaceError(
                f"{dest}: no space left on the device{where}",
                hint="free some space (or raise the quota), then run the same write again with "
                "{resume=True}: the finished shards are kept",
            )
            error.errno = exc.errno  # still an OSError a caller can test for ENOSPC
            raise error from exc

    return guarded


@_out_of_space_named
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
    origin: Sequence[float] | None = None,
    downsample_z: bool = True,
    compression_level: int = 3,
    uncompressed_fraction: float | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    workers: int | None = None,
    client: Client | None = None,
    name: str | None = None,
    source_description: str | None = None,
    source_record: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    break_lease: bool = False,
    progress: ProgressCallback | None = None,
    image_label: Mapping[str, Any] | None = None,
    ome_version: str = "0.5",
    axes: str | Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    channel_colors: Sequence[str] | None = None,
) -> WriteResult:
    """Write ``source`` as a multiscale OME-Zarr 0.5 image at ``dest``, or resume that write.

    Parameters
    ----------
    source
        A 3-D ``(z, y, x)``, 4-D ``(c, z, y, x)`` or 5-D ``(t, c, z, y, x)`` numpy array
        (memory-mapped ones included), dask array, or any object with ``shape``, ``dtype`` and
        numpy-style slicing; it is read one level-0 shard at a time, each region once.
    dest
        Local path, ``file://`` or ``s3://bucket/key`` URL of the image group.
    voxel_size
        Level-0 voxel size: a :class:`~cellvol.VoxelSize`, a scalar, or ``(z, y, x)``.
    unit
        Unit of ``voxel_size`` when it is not a VoxelSize (default nanometre).
    method
        Downsampling: ``mean`` for images, ``mode`` for labels, ``stride``, ``min``, ``max``.
    chunks, shards, n_levels, factors
        Layout overrides, see :func:`cellvol.write._plan.plan_pyramid`.
    origin
        Physical position of the first voxel's centre, ``(z, y, x)`` in the voxel size's unit;
        written as the levels' translations.
    downsample_z
        False when ``z`` indexes separate images (an image stack): only y and x shrink.
    compression_level
        zstd level of the compressed levels' chunks (1-22).
    uncompressed_fraction
        Levels holding at most this fraction of level 0's voxels are stored uncompressed,
        every chunk still checksummed (see :func:`cellvol.write._plan.plan_pyramid`). Default: 1/64
        for images, whose noise compresses little, so that their coarse levels read at memory
        speed; 0 (every level compressed) for ``mode``, as label volumes compress 10-100x.
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
    source_record
        More about the source for the provenance block (files, digests, header fields), or a
        callable returning it, called once the data is written (so that, for example, file
        digests can be computed while the pyramid is).
    storage_options
        Passed to the store (for S3: ``endpoint_url``, ``anon``, ``key``/``secret``...).
    overwrite
        Delete whatever is at ``dest`` first. Without it, ``dest`` must be empty or hold an
        unfinished or finished write with the same parameters (which is resumed or kept).
    resume
        With False, an unfinished write at ``dest`` is refused instead of resumed.
    break_lease
        Take over the write lease of another writer that is known to be gone. A write holds
        a lease on ``dest`` from start to end, and a second writer is refused while it does.
        On local disk a killed writer's lease is free at once; on S3 it is taken over by a
        resume once it has not been renewed for two minutes, or at once with this flag.
    progress
        Called with a :class:`~cellvol.progress.ProgressEvent` as tasks finish, from the
        calling thread's pool threads or, with a client, from the calling thread.
    image_label
        OME-Zarr ``image-label`` metadata, which makes the image a label image; written with
        the rest of its metadata (see :func:`cellvol.labels.write_labels`, which sets it).
    ome_version
        ``"0.5"`` (default) or ``"0.6"``: the OME-Zarr version of the metadata (0.6 names a
        ``physical`` coordinate system that each level maps into).
    axes
        ``"zyx"``, ``"czyx"`` or ``"tczyx"`` (default: by the source's dimensions). Time and
        channel axes are never downsampled, and each chunk holds one channel of one time point.
    channel_names, channel_colors
        One name and one ``RRGGBB`` colour per channel, written in the ``omero`` display
        metadata (default ``c0``, ``c1``, ... and a palette; for a 3-D image, the image's name
        in white).

    Returns
    -------
    WriteResult

    Raises
    ------
    InvalidInputError
        For a source that is not 3-D, 4-D or 5-D as ``axes`` say, channel names or colours
        that do not match its channels, an unsupported dtype, a voxel size outside
        :data:`~cellvol.units.VOXEL_SIZE_RANGE_NM` or an origin farther than
        :data:`~cellvol.units.ORIGIN_LIMIT_NM`, or another bad argument.
    LayoutError
        For a layout or memory limit that cannot be honoured (raised before anything is
        written).
    WriteConflictError
        If ``dest`` holds something else, a write with different parameters, or another
        writer's lease.

    Notes
    -----
    A write changes no process-wide setting of its host. On Linux with glibc, a process whose
    main work is writing pyramids (a script, a dask worker) writes faster and in less memory
    after :func:`cellvol.tune_allocator`, which the ``cellvol`` command line calls itself.
    """
    started = time.perf_counter()
    shape, dtype = _check_source(source)
    image = image_axes(shape, axes, channel_names, channel_colors)
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown downsampling method {method!r}; expected one of {', '.join(METHODS)}"
        )
    if ome_version not in ("0.5", "0.6"):
        raise InvalidInputError(f"ome_version must be '0.5' or '0.6', got {ome_version!r}")
    voxel = VoxelSize.of(voxel_size, unit)
    plan = plan_pyramid(
        shape[len(image.lead) :],
        voxel,
        chunks=chunks,
        shards=shards,
        n_levels=n_levels,
        factors=factors,
        origin=origin,
        downsample_z=downsample_z,
        compression_level=compression_level,
        uncompressed_fraction=_uncompressed_fraction(uncompressed_fraction, method),
    )
    # After planning, which reports a malformed origin as a layout: here only magnitudes.
    check_placement(plan.voxel_size, plan.origin)
    plan = with_leading_axes(plan, image.lead)
    threads = workers if workers is not None else (os.cpu_count() or 1)
    if threads < 1:
        raise InvalidInputError(f"workers must be at least 1, got {threads}")
    parallel = cluster_threads(client) if client is not None else threads
    schedule = plan_schedule(plan, dtype.itemsize, memory_limit=memory_limit, workers=parallel)
    parameters = _parameters(plan, dtype, method) | image.parameters()
    if ome_version != "0.5":  # so that a write started as 0.5 is not resumed as another
        parameters["ome_version"] = ome_version
    # A memory map is read through a reference that releases the pages it reads, from the
    # first read on: the caller's own map would keep them in this process's resident memory
    # (most of the input, for the corner chunks of the sample below).
    readable = portable(source)
    parameters["source_sample"] = _source_sample(readable, plan.levels[0])

    location = parse_location(dest)
    options = dict(storage_options or {})
    store = open_store(location.url, mode="a", storage_options=options)
    if not overwrite and Ledger(store, location.url).job() is None:
        # Before the lease, so that a refused destination is left without a trace of cellvol;
        # checked again under it, where it counts.
        _refuse_foreign_content(store, location.url)
    # One writer at a time: a second one is refused here, before it reads or deletes anything.
    with take_lease(
        store, location.url, LEASE_KEY, resume=resume, break_lease=break_lease
    ) as lease:
        ledger = Ledger(store, location.url)
        if overwrite:
            delete_all_but(store, LEASE_KEY)
        elif ledger.job() is None:
            _refuse_foreign_content(store, location.url)
            _remove_interrupted_temporaries(store)
        else:
            ledger.check_same(parameters)
            if ledger.is_complete():
                # Done already, but only if from this very input: a changed one is refused.
                finished = ledger.finished()
                prove_inputs(readable, plan.levels[0], finished, location.url, workers=threads)
                elapsed = time.perf_counter() - started
                return WriteResult(location.url, plan, schedule, 0, 0, elapsed)
            if not resume:
                raise WriteConflictError(
                    f"{location.url} holds an interrupted write of this volume",
                    hint="continue it with {resume=True}, or start again with {overwrite=True}",
                )
            _remove_interrupted_temporaries(store)

        if ledger.job() is None:
            ledger.begin(parameters)
        group = zarr.open_group(store=store, mode="a", zarr_format=3)
        for level in plan.levels:
            if level.path not in group:
                _create_level(group, level, dtype, image.names)

        finished = ledger.trusted(ledger.finished())
        if finished:  # a resume: its input must be the one the finished shards were made from
            prove_inputs(readable, plan.levels[0], finished, location.url, workers=threads)
        # What the schedule leaves of the memory limit may hold input pages for the next
        # reads; on a cluster, shared among as many processes as there may be.
        spare = max(0, memory_limit - schedule.peak_bytes) // (parallel if client else 1)
        job = Job(
            url=location.url,
            storage_options=options,
            plan=plan,
            method=method,
            source=readable,
            keep_mapped=spare,
        )
        written = reused = 0
        context = TaskContext(job, store)
        try:
            for stage in schedule.stages:
                done_here, reused_here = run_stage(
                    job, stage, finished, client, threads, progress, context
                )
                written += done_here
                reused += reused_here
        except BaseException:
            _close_job(context, client, job, failing=True)
            raise
        _close_job(context, client, job, failing=False)
        if client is not None and is_local_store(store):
            # A worker killed between writing a file and renaming it leaves the temporary; its
            # task ran again elsewhere, so the records must not vouch for a store holding it.
            _remove_interrupted_temporaries(store)

        extra = source_record() if callable(source_record) else source_record
        record = provenance(
            source_description or _describe(source), parameters, extra, date=ledger.began()
        )
        title = name or location.name
        datasets = [Dataset(level.path, level.scale, level.translation) for level in plan.levels]
        attributes = image_attributes(
            datasets, plan.voxel_size.unit, name=title, method=method, provenance_record=record,
            ome_version=ome_version, axes=image.names,
        )  # fmt: skip
        if image_label is not None:
            attributes["ome"]["image-label"] = dict(image_label)
        else:  # intensities: a contrast window, so that viewers open the image legibly
            displays = channel_displays(group[plan.levels[0].path], location.url, image, title)
            depth = plan.levels[0].shape[len(image.lead)]
            attributes["ome"]["omero"] = omero_metadata(displays, depth)
        # The manifest goes first: an image whose metadata says cellvol wrote it is refused
        # without one (a crash in between leaves no OME metadata, so no image).
        lease.check()
        shard_layouts, arrays, digests = end_records(ledger, plan, dtype)
        ledger.write_manifest(shard_layouts, arrays)
        group.attrs.update(stored_attributes(attributes, location.url))
        # zarr wrote the metadata into the page cache; the completion marker must not reach the
        # disk before it (the shards and the manifest are synced where they are written).
        make_durable(store, ["zarr.json", *(f"{level.path}/zarr.json" for level in plan.levels)])
        described = image_label is None  # a label image is described by its image's crate
        if described:
            write_crate(store, location.url)
        paths = [level.path for level in plan.levels]
        crate = [CRATE_KEY] if described else []
        write_digests(store, "", digests | metadata_digests(store, paths, crate))
        elapsed = time.perf_counter() - started
        lease.check()  # a writer that lost its lease must not vouch for the image
        ledger.mark_complete()  # how this run went is in the result, not in the image
        return WriteResult(location.url, plan, schedule, written, reused, elapsed)


def _close_job(context: TaskContext, client: Client | None, job: Job, *, failing: bool) -> None:
    """Stop this process's writer threads and have a cluster's workers drop the job."""
    context.writers.shutdown()
    if client is not None:
        # While failing, best effort: the write's own error is the one to see, not a
        # cluster's on cleanup.
        with contextlib.suppress(Exception) if failing else contextlib.nullcontext():
            forget_job_on_workers(client, job)


# -- checks ------------------------------------------------------------------------------------


def _check_source(source: object) -> tuple[tuple[int, ...], np.dtype[Any]]:
    shape = getattr(source, "shape", None)
    dtype = getattr(source, "dtype", None)
    if shape is None or dtype is None or not hasattr(source, "__getitem__"):
        raise InvalidInputError(
            f"source must be an array with shape, dtype and slicing; got {type(source).__name__}"
        )
    shape = tuple(int(n) for n in shape)
    if any(n == 0 for n in shape):
        raise InvalidInputError(f"source has an empty axis: shape {shape}")
    dtype = np.dtype(dtype)
    if not supported_dtype(dtype):
        raise InvalidInputError(
            f"source dtype {dtype} is not supported; expected an integer or float type"
        )
    return shape, dtype


def _uncompressed_fraction(given: float | None, method: str) -> float:
    if given is not None:
        return given
    return 0.0 if method == "mode" else DEFAULT_UNCOMPRESSED_FRACTION


def _parameters(plan: PyramidPlan, dtype: np.dtype[Any], method: str) -> dict[str, Any]:
    """Everything that decides the bytes written; a resumed write must match it exactly."""
    return {
        "dtype": str(dtype),
        "voxel_size": list(plan.voxel_size.zyx),
        "origin": list(plan.origin),
        "unit": plan.voxel_size.unit,
        "method": method,
        # Per level: the zstd level, or None where the chunks are stored uncompressed.
        "compression": {
            "codec": "zstd",
            "levels": [level.compression for level in plan.levels],
            "checksum": "crc32c",
        },
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
        digest.update(np.ascontiguousarray(read_source(source, region)).tobytes())
    return digest.hexdigest()[:32]


def _refuse_existing_node(store: Store, url: str) -> None:
    try:
        node = open_node(store, url)
    except NotOMEZarrError:
        return
    except MetadataError as exc:
        raise WriteConflictError(
            f"{url} already holds zarr metadata that cellvol did not write and cannot read ({exc})",
            hint="pass {overwrite=True} to replace it",
        ) from exc
    kind = "group" if isinstance(node, zarr.Group) else "array"
    raise WriteConflictError(
        f"{url} already holds a zarr {kind} that cellvol did not start",
        hint="pass {overwrite=True} to replace it",
    )


# zarr's local store writes "<stem>.<32 hex digits>.partial" and renames it into place; a
# process killed in between leaves one behind.
_INTERRUPTED_TEMPORARY = re.compile(r"\.[0-9a-f]{32}\.partial$")


def _remove_interrupted_temporaries(store: Store) -> None:
    for key in list_keys(store, ""):
        if _INTERRUPTED_TEMPORARY.search(key):
            delete_prefix(store, key)


def _refuse_foreign_content(store: Store, url: str) -> None:
    _refuse_existing_node(store, url)
    if any(
        key != LEASE_KEY and not _INTERRUPTED_TEMPORARY.search(key) for key in list_keys(store, "")
    ):
        raise WriteConflictError(
            f"{url} is not empty and holds no cellvol write",
            hint="pass {overwrite=True} to replace it",
        )


def _create_level(
    group: zarr.Group, level: LevelPlan, dtype: np.dtype[Any], axes: Sequence[str]
) -> None:
    group.create_array(
        name=level.path,
        shape=level.shape,
        dtype=dtype,
        chunks=level.chunks,
        shards=level.shards,
        fill_value=0,
        # What cellvol._codec._shard.encode_shard writes; zarr itself only writes the metadata.
        **sharding_codecs(level.compression),
        dimension_names=tuple(axes),
        # Store every chunk, even uniform ones, so a missing chunk always means damage.
        config={"write_empty_chunks": True},
        overwrite=True,
    )


# -- the end of a write ------------------------------------------------------------------------


def _describe(source: object) -> str:
    kind = f"{type(source).__module__.split('.')[0]}.{type(source).__name__}"
    shape = tuple(getattr(source, "shape", ()))
    return f"{kind} of shape {shape} and dtype {getattr(source, 'dtype', '?')}"
