"""``verify`` and ``pack`` throughput beside the machine's limits, on 1 and 16 GiB images.

    .venv/bin/python benchmarks/verify_pack.py --sizes 1,16 --data-dir /big/disk/bench
    .venv/bin/python benchmarks/verify_pack.py --quick       # 64 MiB: checks the script runs

Each image (the seed-0 synthetic tomogram, uint8, written with cellvol's defaults) is built
once in ``--data-dir`` and reused by later runs. In the same run the machine's limits are
measured on it:

- the disk read rate of the image's own stored bytes, every object read whole on one thread
  per core as ``verify`` reads them: *cold* after dropping the files' pages from the page
  cache (``posix_fadvise(DONTNEED)`` on each file after a ``sync``, which any user may do;
  the record says whether the pages really left, since some file systems keep them), and
  *warm* with the image cached (when it fits in memory);
- CRC32C, SHA-256, MD5 and the zip CRC-32 (cellvol's, by ISA-L) rates over in-memory buffers
  on every core.

Then, each in a fresh process whose memory the parent samples: ``verify`` (cold and warm, the
median of three runs), ``verify --zarr-checksum`` (warm, also three), ``pack`` into a ``.ozx``
beside the image against ``cp -r`` of the image directory to the same file system (both
followed by a ``sync``: ``pack`` syncs its archive; three alternating rounds, medians
compared), and ``verify`` of the archive; each timed inside the child, after its modules are
imported. Throughput is stored bytes per second. ``verify`` is given as a fraction of its
limit: its hashing (CRC32C then SHA-256 of the same bytes on every core; with ``--zarr-
checksum`` MD5 too, for an archive the zip CRC-32 too) against the read rate. Cold, the disk
transfers while the cores hash, so the limit is the slower of the two, where the cores' share
counts the CPU the cold read itself took (measured with it: the kernel fills the page cache on
the same cores); warm, copying out of the page cache takes the same cores as hashing, so the
two add up. Peak memory should not grow with the image. Results go to a JSON file and a
Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure

HERE = Path(__file__).resolve().parent
# Voxels of uint8: 64 MiB for --quick, then the 1 and 16 GiB shapes of compare_pyramid.py.
SHAPES: dict[str, tuple[int, int, int]] = {
    "quick": (128, 512, 1024),
    "1": (512, 1024, 2048),
    "16": (2048, 2048, 4096),
}
_HASH_BUFFER_BYTES = 64 << 20
# Alternating pack and cp runs per size; their medians are compared.
PACK_ROUNDS = 3
VERIFY_ROUNDS = 3
_READ_BLOCK = 16 << 20


def build_image(size: str, data_dir: Path) -> Path:
    """The synthetic image of ``size`` in ``data_dir``, written once and reused after."""
    import cellvol
    from cellvol.synthetic import SyntheticVolume

    root = data_dir / f"verify-{size}.ome.zarr"
    if (root / "_cellvol" / "complete.json").exists():
        return root
    volume = SyntheticVolume(SHAPES[size], "uint8", seed=0)
    cellvol.write_pyramid(volume, root, 1.0, overwrite=True, name=f"verify-{size}")
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def drop_cached(files: list[Path]) -> None:
    """Ask the kernel to drop the files' clean pages (after writing back any dirty ones)."""
    os.sync()
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def cached_fraction(files: list[Path]) -> float | None:
    """The fraction of the files' pages in the page cache (by mincore); None if unknown."""
    import ctypes
    import mmap

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
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
    page = mmap.PAGESIZE
    resident = total = 0
    for path in files:
        size = path.stat().st_size
        if size == 0:
            continue
        descriptor = os.open(path, os.O_RDONLY)
        try:
            address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
            if address in (None, ctypes.c_void_p(-1).value):
                return None
            pages = (size + page - 1) // page
            vector = (ctypes.c_ubyte * pages)()
            failed = libc.mincore(address, size, vector) != 0
            libc.munmap(address, size)
            if failed:
                return None
            resident += sum(v & 1 for v in vector)
            total += pages
        finally:
            os.close(descriptor)
    return resident / total if total else None


def read_rate(files: list[Path], workers: int) -> tuple[float, float]:
    """Reading every file whole, ``workers`` at a time, as verify reads objects.

    Bytes/s, and the CPU seconds (user and system, every thread) the reads took per byte:
    the kernel's share of a read, which a cold read pays in filling the page cache.
    """

    def read(path: Path) -> int:
        with path.open("rb", buffering=0) as stream:
            return len(stream.read())

    cpu = _cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        nbytes = sum(pool.map(read, files))
    seconds = time.perf_counter() - started
    return nbytes / seconds, (_cpu_seconds() - cpu) / nbytes


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def hashing_rates(workers: int) -> dict[str, float]:
    """Bytes/s of each hash over in-memory buffers, one buffer per core; best of three."""
    from cellvol._codec._shard import crc32c_bytes
    from cellvol._store._zip import zip_crc32

    buffers = [os.urandom(_HASH_BUFFER_BYTES) for _ in range(workers)]
    hashes: dict[str, Callable[[bytes], object]] = {
        "crc32c": crc32c_bytes,
        "sha256": lambda data: hashlib.sha256(data).digest(),
        "md5": lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
        "zip_crc32": zip_crc32,
    }
    rates: dict[str, float] = {}
    with ThreadPoolExecutor(workers) as pool:
        for name, function in hashes.items():
            best = 0.0
            for _ in range(3):
                started = time.perf_counter()
                list(pool.map(function, buffers))
                best = max(best, workers * _HASH_BUFFER_BYTES / (time.perf_counter() - started))
            rates[name] = best
    return rates


def run_child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last JSON line, with time and peak memory."""
    result = measure([sys.executable, "-c", code])
    record: dict[str, Any] = {
        "seconds": result.seconds,
        "peak_anon_mib": result.peak_anon_mib,
        "peak_rss_mib": result.peak_rss_mib,
        "returncode": result.returncode,
    }
    if result.returncode != 0:
        record["output"] = result.output
    for line in result.output.splitlines():
        if line.startswith("{"):
            record.update(json.loads(line))
    return record


def verify_code(target: Path, zarr_checksum: bool) -> str:
    return (
        "import json, time, cellvol\n"
        "verify = cellvol.verify  # its modules load before the clock starts\n"
        "started = time.perf_counter()\n"
        f"report = verify({str(target)!r}, zarr_checksum={zarr_checksum})\n"
        "print(json.dumps({'inner_seconds': time.perf_counter() - started, "
        "'intact': report.intact, 'nbytes': report.nbytes, 'objects': report.shards, "
        "'zarr_checksum': report.zarr_checksum}))\n"
    )


def pack_code(image: Path, out: Path) -> str:
    return (
        "import json, time, cellvol\n"
        "pack = cellvol.pack  # its modules load before the clock starts\n"
        "started = time.perf_counter()\n"
        f"pack({str(image)!r}, {str(out)!r}, overwrite=True)\n"
        "print(json.dumps({'inner_seconds': time.perf_counter() - started}))\n"
    )


def copy_with_cp(image: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    result = measure(["sh", "-c", 'cp -r "$0" "$1" && sync', str(image), str(out)])
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    if result.returncode != 0:  # a failed copy's time is no measure of a copy
        raise SystemExit(f"cp -r {image} {out} failed ({result.returncode}):\n{result.output}")
    return {"seconds": result.seconds, "returncode": result.returncode}


def measure_size(size: str, data_dir: Path, workers: int, hashes: dict[str, float]) -> dict:
    image = build_image(size, data_dir)
    files = stored_files(image)
    stored = sum(p.stat().st_size for p in files)
    drop_cached(files)
    left = cached_fraction(files)
    cold_read, cold_read_cpu = read_rate(files, workers)
    cached = cached_fraction(files)  # all of it, unless the image is larger than the cache
    warm_read, _ = read_rate(files, workers)
    verify_cold = median_run(verify_code(image, False), before=lambda: drop_cached(files))
    verify_warm = median_run(verify_code(image, False))
    checksum_warm = median_run(verify_code(image, True))
    archive = data_dir / f"verify-{size}.ozx"
    pack, cp = pack_rounds(image, archive, data_dir / f"verify-{size}-cp.ome.zarr")
    verify_archive = run_child(verify_code(archive, False))
    archive.unlink(missing_ok=True)
    # verify hashes every byte twice (CRC32C, then SHA-256 against the digests); a checksum
    # run adds MD5, an archive zip's CRC-32.
    crc_limit = _serial(hashes, "crc32c", "sha256")
    checksum_limit = _serial(hashes, "crc32c", "sha256", "md5")
    archive_limit = _serial(hashes, "crc32c", "sha256", "zip_crc32")
    limits: dict[str, Any] = {
        "cold_read_Bps": cold_read,
        "cold_read_cpu_seconds_per_byte": cold_read_cpu,
        "warm_read_Bps": warm_read,
        "drop_method": "os.sync, then posix_fadvise(POSIX_FADV_DONTNEED) on each file",
        "cached_fraction_after_drop": left,
        "cached_fraction_for_warm_read": cached,
        "verify_hash_limit_Bps": crc_limit,
        "verify_zarr_checksum_hash_limit_Bps": checksum_limit,
        "verify_ozx_hash_limit_Bps": archive_limit,
    }
    # Each run's limit and the formula that gave it, stored: a later change of formula cannot
    # rescore this record silently.
    limits["verify_runs"] = verify_limits(limits, workers)
    return {
        "size": size,
        "shape": list(SHAPES[size]),
        "stored_bytes": stored,
        "objects": len(files),
        "limits": limits,
        "verify_cold": verify_cold,
        "verify_warm": verify_warm,
        "verify_zarr_checksum_warm": checksum_warm,
        "verify_ozx_warm": verify_archive,
        "pack": pack,
        "cp": cp,
    }


def median_run(code: str, before: Callable[[], object] | None = None) -> dict[str, Any]:
    """The median of :data:`VERIFY_ROUNDS` runs of ``code``, each in a fresh process.

    A verify of 1 GiB takes about a second, which one run's noise on a shared machine swamps.
    """
    runs = []
    for _ in range(VERIFY_ROUNDS):
        if before is not None:
            before()
        runs.append(run_child(code))
    return sorted(runs, key=lambda run: run["inner_seconds"])[VERIFY_ROUNDS // 2] | {
        "rounds_seconds": [run["inner_seconds"] for run in runs]
    }


def pack_rounds(image: Path, archive: Path, copy: Path) -> tuple[dict, dict]:
    """``pack`` into ``archive`` and ``cp -r`` into ``copy``, in turns: each one's median run.

    The archive of the last round is left in place (for a verify of it).
    """
    # The disk's write speed swings by several times within minutes: cp and pack take turns,
    # each output removed and synced away before the next starts, and the medians are
    # compared. cp goes first in a round, so that only the last round's archive is left.
    packs, copies = [], []
    for _ in range(PACK_ROUNDS):
        archive.unlink(missing_ok=True)
        os.sync()
        copies.append(copy_with_cp(image, copy))
        packs.append(run_child(pack_code(image, archive)))
        if packs[-1]["returncode"] != 0:
            raise SystemExit(f"pack failed ({packs[-1]['returncode']}):\n{packs[-1]['output']}")
    pack = sorted(packs, key=lambda run: run["inner_seconds"])[PACK_ROUNDS // 2] | {
        "rounds_seconds": [run["inner_seconds"] for run in packs]
    }
    cp = sorted(copies, key=lambda run: run["seconds"])[PACK_ROUNDS // 2] | {
        "rounds_seconds": [run["seconds"] for run in copies]
    }
    return pack, cp


def measure_pack_only(size: str, data_dir: Path) -> dict[str, Any]:
    """Only the pack-against-cp rounds of :func:`measure_size`, on the image as it is cached."""
    image = build_image(size, data_dir)
    files = stored_files(image)
    archive = data_dir / f"verify-{size}.ozx"
    pack, cp = pack_rounds(image, archive, data_dir / f"verify-{size}-cp.ome.zarr")
    archive.unlink(missing_ok=True)
    return {
        "size": size,
        "shape": list(SHAPES[size]),
        "stored_bytes": sum(p.stat().st_size for p in files),
        "objects": len(files),
        "pack": pack,
        "cp": cp,
    }


def print_pack_report(report: dict[str, Any]) -> None:
    """The Markdown table of a ``--pack-only`` run."""
    print("\n| size | stored MB | pack s (rounds) | cp -r && sync s (rounds) | of cp's speed |")
    print("|---|---|---|---|---|")
    for case in report["sizes"]:
        pack, cp = case["pack"], case["cp"]
        rounds = [", ".join(f"{s:.1f}" for s in run["rounds_seconds"]) for run in (pack, cp)]
        print(
            f"| {case['size']} | {case['stored_bytes'] / 1e6:.0f} "
            f"| {pack['inner_seconds']:.1f} ({rounds[0]}) | {cp['seconds']:.1f} ({rounds[1]}) "
            f"| {cp['seconds'] / pack['inner_seconds']:.0%} |"
        )


#: The issue's limit of a cold verify: the disk, or hashing on every core, the slower.
COLD_LITERAL: Final = "min(cold read, hashing on all cores)"
#: The same, where the cores also pay the kernel's CPU for the cold read they wait for.
COLD_REFINED: Final = (
    "min(cold read, 1 / (cold read CPU seconds per byte / cores + 1 / hashing on all cores))"
)
#: Warm: copying out of the page cache and hashing share the cores.
WARM: Final = "1 / (1 / cached read + 1 / hashing on all cores)"
# The verify runs' labels in the tables.
_LABELS: Final = {
    "verify_cold": "verify cold",
    "verify_warm": "verify warm",
    "verify_zarr_checksum_warm": "verify --zarr-checksum warm",
    "verify_ozx_warm": "verify .ozx warm",
}
# The verify runs: their name, their read rate's key, their hashing limit's key.
_VERIFY_RUNS: Final = (
    ("verify_cold", "cold_read_Bps", "verify_hash_limit_Bps"),
    ("verify_warm", "warm_read_Bps", "verify_hash_limit_Bps"),
    ("verify_zarr_checksum_warm", "warm_read_Bps", "verify_zarr_checksum_hash_limit_Bps"),
    ("verify_ozx_warm", "warm_read_Bps", "verify_ozx_hash_limit_Bps"),
)


def verify_limits(limits: dict[str, Any], cpus: int) -> dict[str, dict[str, Any]]:
    """Each verify run's limit (bytes/s), its formula, and which side binds.

    A cold run also gets the issue's literal limit beside it (``literal_*``), so that both can
    be shown: the refined one counts the cold read's CPU and so is lower for the same run.
    """
    found: dict[str, dict[str, Any]] = {}
    for name, read_key, hash_key in _VERIFY_RUNS:
        read, hashing = float(limits[read_key]), float(limits[hash_key])
        if name == "verify_cold":
            cores = _cold_cpu_limit(limits, hash_key, cpus)
            refined = "cold_read_cpu_seconds_per_byte" in limits
            found[name] = {
                "limit_Bps": min(read, cores),
                "formula": COLD_REFINED if refined else COLD_LITERAL,
                "bound_by": "read" if read <= cores else "hashing + page cache",
                "literal_limit_Bps": min(read, hashing),
                "literal_formula": COLD_LITERAL,
            }
        else:
            found[name] = {
                "limit_Bps": 1 / (1 / read + 1 / hashing),
                "formula": WARM,
                "bound_by": "cached read + hashing",
            }
    return found


def _cold_cpu_limit(limits: dict[str, Any], hash_key: str, cpus: int) -> float:
    """Bytes/s the cores manage cold: hashing, and the kernel's work of each cold read.

    Results recorded before the read's CPU was measured give hashing alone.
    """
    per_byte = limits.get("cold_read_cpu_seconds_per_byte")
    if per_byte is None:
        return float(limits[hash_key])
    return 1 / (per_byte / cpus + 1 / limits[hash_key])


def _serial(rates: dict[str, float], *names: str) -> float:
    """Bytes/s of computing each of ``names`` over the same bytes, one after the other."""
    return 1 / sum(1 / rates[name] for name in names)


def print_report(report: dict[str, Any]) -> None:
    """The Markdown tables: verify against its limits, pack against cp."""
    mb = 1e6
    print(
        f"\nhashing on {report['machine']['cpus']} cores (MB/s): "
        + ", ".join(f"{name} {rate / mb:.0f}" for name, rate in report["hashing_Bps"].items())
    )
    print(
        "\n| size | stored MB | run | MB/s | of limit | limit MB/s | of issue's limit "
        "| issue's limit MB/s | peak RSS MiB | peak anon MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    formulas: dict[str, str] = {}
    for case in report["sizes"]:
        stored, limits = case["stored_bytes"], case["limits"]
        # Records made before the limits were stored: computed now, with their formula.
        runs = limits.get("verify_runs") or verify_limits(limits, report["machine"]["cpus"])
        for name, found in runs.items():
            run = case[name]
            rate = stored / run["inner_seconds"] if "inner_seconds" in run else float("nan")
            limit = found["limit_Bps"]
            formulas[found["bound_by"]] = found["formula"]
            literal = found.get("literal_limit_Bps")
            issue = "-" if literal is None else f"{rate / literal:.0%}"
            issue_limit = "-" if literal is None else f"{literal / mb:.0f}"
            print(
                f"| {case['size']} | {stored / mb:.0f} | {_LABELS[name]} "
                f"| {rate / mb:.0f} | {rate / limit:.0%} | {found['bound_by']} {limit / mb:.0f} "
                f"| {issue} | {issue_limit} "
                f"| {run['peak_rss_mib']:.0f} | {run['peak_anon_mib']:.0f} |"
            )
        # pack's own time (interpreter start excluded; it syncs its archive) against cp's
        # with the sync after it.
        pack, cp = case["pack"], case["cp"]
        pack_rate, cp_rate = stored / pack["inner_seconds"], stored / cp["seconds"]
        print(
            f"| {case['size']} | {stored / mb:.0f} | pack (cp -r && sync: {cp_rate / mb:.0f} "
            f"MB/s) | {pack_rate / mb:.0f} | {pack_rate / cp_rate:.0%} of cp | - | - | - "
            f"| {pack['peak_rss_mib']:.0f} | {pack['peak_anon_mib']:.0f} |"
        )
        left, cached = limits["cached_fraction_after_drop"], limits["cached_fraction_for_warm_read"]
        print(
            f"\n{case['size']}: pages cached after the drop (cold reads): {_percent(left)}; "
            f"before the warm read: {_percent(cached)}"
        )
    print("\nlimits: " + "; ".join(f"{bound}: {formula}" for bound, formula in formulas.items()))
    print(f"issue's limit (cold only): {COLD_LITERAL}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,16", help="comma-separated: quick, 1, 16 (GiB)")
    parser.add_argument("--quick", action="store_true", help="only the 64 MiB image")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CELLVOL_BENCH_DIR", "/tmp/cellvol-bench")),
    )
    parser.add_argument("--out", type=Path, help="default: results/verify-pack.json")
    parser.add_argument(
        "--report", type=Path, help="print an earlier run's tables; measure nothing"
    )
    parser.add_argument(
        "--pack-only",
        action="store_true",
        help="only the pack against cp rounds (default out: results/verify-pack-only.json)",
    )
    args = parser.parse_args()
    if args.report is not None:
        earlier = json.loads(args.report.read_text())
        (print_pack_report if earlier.get("pack_only") else print_report)(earlier)
        return
    sizes = ["quick"] if args.quick else args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown size(s) {unknown}: choose from {sorted(SHAPES)}")
    name = "verify-pack-only" if args.pack_only else "verify-pack"
    out = args.out or (
        args.data_dir / f"{name}-quick.json" if args.quick else HERE / "results" / f"{name}.json"
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.pack_only:
        report = {
            "pack_only": True,
            "machine": {"cpus": os.cpu_count() or 1, "python": platform.python_version()},
            "sizes": [measure_pack_only(size, args.data_dir) for size in sizes],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print_pack_report(report)
        print(f"\nraw results: {out}")
        return
    workers = os.cpu_count() or 1
    hashes = hashing_rates(workers)
    report = {
        "machine": {
            "cpus": workers,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "data_dir_filesystem": _filesystem(args.data_dir),
        },
        "hashing_Bps": hashes,
        "sizes": [measure_size(size, args.data_dir, workers, hashes) for size in sizes],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"\nraw results: {out}")


def _percent(fraction: float | None) -> str:
    return "unknown" if fraction is None else f"{fraction:.0%}"


def _filesystem(path: Path) -> str:
    try:
        return subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
