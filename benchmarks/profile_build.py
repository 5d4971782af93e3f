"""Where a pyramid build's CPU time goes, stage by stage (issue #21).

    .venv/bin/python benchmarks/profile_build.py --data-dir /dev/shm/cellvol-bench
    .venv/bin/python benchmarks/profile_build.py --size-mib 256 --repeat 3
    .venv/bin/python benchmarks/profile_build.py --chunk 128      # 128³ chunks in 256³ shards

Builds cellvol's default layout (64³ chunks in 256³ shards, zstd-3, CRC32C per chunk, coarse
levels raw; ``--chunk`` changes the chunks) from the synthetic seed-0 tomogram of
``compare_pyramid.py``, memory-mapped from ``--data-dir`` and written into ``--data-dir`` too
(point it at tmpfs, ``/dev/shm``, to take the disk away). The build runs in this process on
``--workers`` threads, and the functions each stage calls are wrapped, in this process only,
by a timer of the calling thread's CPU time (user and system: page faults and syscalls count
where they happen). Work a stage hands to cellvol's decode pool (a read back decodes its chunks
there) counts in that stage, timed in the pool's threads. Nested stages (gather, compress and
checksum inside the shard encoder) are shown indented and counted once in the total. What no
stage accounts for (planning, metadata, the task loop, the ledger's bookkeeping) is "other".

CPU times are per GiB of input, summed over threads: on a machine shared with other work they
hold far better than wall-clock time, which is reported too. The input of ``--size-mib`` below
1024 is the first planes of the 1 GiB input, copied once into its own file. Results go to
``benchmarks/results/profile-build.json`` (``--out``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from compare_pyramid import make_input, pyramid_config

HERE = Path(__file__).resolve().parent
GIB = 2**30

# (stage, parent stage or None, module, attribute): the functions timed, by where the build
# looks them up at call time.
STAGES: list[tuple[str, str | None, str, str]] = [
    ("read input (memory map)", None, "cellvol.write._tasks", "read_source"),
    ("input CRC32C (resume proof)", None, "cellvol.write._tasks", "input_digest"),
    ("read back (earlier stages)", None, "cellvol._codec._reader", "ChunkReader.read"),
    ("kernel (downsample)", None, "cellvol.write._tasks", "downsample"),
    ("encode shard", None, "cellvol.write._tasks", "encode_shard"),
    ("gather chunks", "encode shard", "cellvol._codec._shard", "copy_rows"),
    ("compress (zstd)", "encode shard", "cellvol._codec._shard", "Zstd.encode"),
    ("checksum chunks (CRC32C)", "encode shard", "cellvol._codec._shard", "crc32c_bytes"),
    ("SHA-256 of each shard", None, "cellvol.write._tasks", "sha256_hex"),
    ("write (syscalls, page cache)", None, "cellvol.write._tasks", "write_bytes"),
    ("sync (fsync)", None, "cellvol.write._tasks", "make_durable"),
    ("ledger record", None, "cellvol.write._ledger", "Ledger.record"),
    # The main thread's own work before and after the tasks: no task runs meanwhile.
    ("start: create the levels' arrays", None, "cellvol.write._pyramid", "_create_level"),
    ("start: source sample digest", None, "cellvol.write._pyramid", "_source_sample"),
    ("end: contrast window (reads level 0)", None, "cellvol.write._pyramid", "channel_displays"),
    ("end: manifest records", None, "cellvol.write._pyramid", "end_records"),
    ("end: RO-Crate metadata", None, "cellvol.write._pyramid", "write_crate"),
    ("end: metadata digests", None, "cellvol.write._pyramid", "metadata_digests"),
]

# (module, attribute): functions returning a pool of helper threads, whose tasks are timed in
# the stages that submit them, not in "other".
POOLS: list[tuple[str, str]] = [("cellvol._codec._reader", "_decode_pool")]


class Timers:
    """CPU seconds and calls per stage, summed over the threads that ran them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {name: 0.0 for name, *_ in STAGES}
        self.calls: dict[str, int] = {name: 0 for name, *_ in STAGES}
        self._lock = threading.Lock()
        self._running = threading.local()  # the stages the calling thread is in, outermost first

    def _stack(self) -> list[str]:
        stack: list[str] | None = getattr(self._running, "stack", None)
        if stack is None:
            stack = self._running.stack = []
        return stack

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack()
            stack.append(name)
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                stack.pop()
                with self._lock:
                    self.seconds[name] += spent
                    self.calls[name] += 1

        return timed

    def on_behalf(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` timed, wherever it runs, in the stages the calling thread is in now."""
        stages = tuple(self._stack())
        if not stages:
            return function

        def helped(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    for name in stages:  # a nested stage's time is in its parent's too
                        self.seconds[name] += spent

        return helped


class AttributedPool(Executor):
    """A pool whose tasks count in the stages that submitted them."""

    def __init__(self, pool: Executor, timers: Timers) -> None:
        self._pool = pool
        self._timers = timers

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._pool.submit(self._timers.on_behalf(fn), *args, **kwargs)


def install(timers: Timers) -> None:
    """Wrap every stage's function where the build looks it up."""
    import importlib

    for name, _, module_name, attribute in STAGES:
        owner: Any = importlib.import_module(module_name)
        *path, last = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, last, timers.wrap(name, getattr(owner, last)))
    for module_name, attribute in POOLS:
        module = importlib.import_module(module_name)
        make_pool = getattr(module, attribute)
        setattr(module, attribute, lambda make_pool=make_pool: AttributedPool(make_pool(), timers))


def slab_input(size_mib: int, data_dir: Path) -> Path:
    """The 1 GiB input, or a file holding its first ``size_mib`` MiB of planes."""
    full = make_input(1, data_dir)
    if size_mib == 1024:
        return full
    path = data_dir / f"tomo_{size_mib}mib.npy"
    if not path.exists():
        source = np.load(full, mmap_mode="r")
        planes = size_mib * 2**20 // (source.shape[1] * source.shape[2])
        partial = path.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(
            partial, mode="w+", dtype=source.dtype, shape=(planes, *source.shape[1:])
        )
        out[:] = source[:planes]
        out.flush()
        partial.rename(path)
    return path


def build_once(source: Path, out: Path, workers: int, chunk: int | None) -> dict[str, Any]:
    """One default-layout build, timed stage by stage."""
    import cellvol

    data = np.load(source, mmap_mode="r")
    config = pyramid_config(tuple(data.shape), (1.0, 1.0, 1.0), n_levels=4)
    timers = Timers()
    install(timers)
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    try:
        cellvol.write_pyramid(
            data,
            out,
            (1.0, 1.0, 1.0),
            chunks=None if chunk is None else (chunk,) * 3,
            factors=[tuple(f) for f in config["factors"]],
            method="mean",
            overwrite=True,
            workers=workers,
            name="bench",
        )
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        after = resource.getrusage(resource.RUSAGE_SELF)
        stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    finally:
        _uninstall()
        shutil.rmtree(out, ignore_errors=True)
    per_gib = GIB / data.nbytes
    nested = sum(timers.seconds[name] for name, parent, *_ in STAGES if parent is not None)
    accounted = sum(timers.seconds.values()) - nested
    stages = {
        name: {
            "cpu_s_per_gib": timers.seconds[name] * per_gib,
            "calls": timers.calls[name],
            "within": parent,
        }
        for name, parent, *_ in STAGES
    }
    for name, parent, *_ in STAGES:
        if parent is None and any(p == name for _, p, *_ in STAGES):
            inner = sum(timers.seconds[n] for n, p, *_ in STAGES if p == name)
            stages[f"{name}: its own Python"] = {
                "cpu_s_per_gib": (timers.seconds[name] - inner) * per_gib,
                "calls": timers.calls[name],
                "within": name,
            }
    stages["other (planning, metadata, task loop)"] = {
        "cpu_s_per_gib": (cpu - accounted) * per_gib,
        "calls": 0,
        "within": None,
    }
    return {
        "input_bytes": int(data.nbytes),
        "stored_bytes": stored,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_s_per_gib": cpu * per_gib,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "minor_page_faults": after.ru_minflt - before.ru_minflt,
        "stages": stages,
    }


_ORIGINALS: dict[tuple[str, str], Any] = {}


def _remember() -> None:
    import importlib

    for _, _, module_name, attribute in STAGES:
        owner: Any = importlib.import_module(module_name)
        *path, last = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        _ORIGINALS[(module_name, attribute)] = (owner, last, getattr(owner, last))
    for module_name, attribute in POOLS:
        module = importlib.import_module(module_name)
        _ORIGINALS[(module_name, attribute)] = (module, attribute, getattr(module, attribute))


def _uninstall() -> None:
    for owner, last, original in _ORIGINALS.values():
        setattr(owner, last, original)


def print_table(runs: list[dict[str, Any]]) -> None:
    """Stages' CPU seconds per GiB (median over runs), and the builds' totals."""
    names = list(runs[0]["stages"])
    print("\n| stage | CPU s per GiB | calls |")
    print("|---|---|---|")
    for name in names:
        values = [r["stages"][name]["cpu_s_per_gib"] for r in runs]
        within = runs[0]["stages"][name]["within"]
        label = f"&nbsp;&nbsp;{name}" if within else name
        print(f"| {label} | {np.median(values):.3f} | {runs[0]['stages'][name]['calls']} |")
    median = {k: float(np.median([r[k] for r in runs])) for k in ("cpu_s_per_gib", "wall_s")}
    user = float(np.median([r["user_s"] for r in runs]))
    system = float(np.median([r["system_s"] for r in runs]))
    print(
        f"| **total CPU** (user {user:.2f} s, system {system:.2f} s) "
        f"| **{median['cpu_s_per_gib']:.3f}** | |"
    )
    print(f"\nwall: {median['wall_s']:.2f} s (median of {len(runs)}; noisy on a shared machine)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, choices=[128, 256, 512, 1024], default=1024)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CELLVOL_BENCH_DIR", "/dev/shm/cellvol-bench")),
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, help="inner chunk edge (default: cellvol's, 64)")
    parser.add_argument("--repeat", type=int, default=3, help="builds; the median is reported")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile-build.json")
    args = parser.parse_args()

    import cellvol

    cellvol.tune_allocator()  # as the command line and compare_pyramid's builds do
    args.data_dir.mkdir(parents=True, exist_ok=True)
    source = slab_input(args.size_mib, args.data_dir)
    _remember()
    runs = [
        build_once(source, args.data_dir / "profile-out.ome.zarr", args.workers, args.chunk)
        for _ in range(args.repeat)
    ]
    print_table(runs)
    report = {
        "case": f"{args.size_mib} MiB uint8 tomogram, default layout"
        + (f", {args.chunk}³ chunks" if args.chunk else ""),
        "workers": args.workers,
        "data_dir": str(args.data_dir),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
