"""Ingest in bounded memory: convert generated MRC tomograms and TIFF slice stacks of growing size.

    .venv/bin/python benchmarks/ingest_scale.py                  # 1 and 4 GiB of each
    .venv/bin/python benchmarks/ingest_scale.py --sizes 1,4,16   # the full run

Inputs are written once to ``--data-dir`` (default /tmp/cellvol-bench), slab by slab from
cellvol.synthetic.SyntheticVolume so they never sit whole in memory: an int16 MRC tomogram
(mode 1, 8 Å voxels) and a directory of uint8 TIFF slices (a FIB-SEM export, voxels of
8 nm in z and 5 nm in y and x).
Each is converted by ``cellvol convert`` in a fresh process with the default 1 GiB memory
limit, as an archive runs it (SHA-256 digests of the input on, default layout: 64³ chunks in
256³ shards), again with ``--no-digest``, and again with the peer's 128³ chunks (in 256³
shards); the parent samples the child's memory every 10 ms. Before each conversion the
input's pages are dropped from the page cache and read back (``_measure.settle``), so every
tool finds it cached as a file read from disk, not as this script wrote it.
The claim to check: the peak does not grow with the input's size, so an input larger than RAM
converts the same way.

The peer, in the same run and on the same file: the file's own reader (mrcfile's memory map of
an MRC; tifffile reading a slice stack into a temporary memory-mapped file) feeding
compare_pyramid.py's tensorstore pipeline, with the same levels and factors cellvol's planner
chose, zstd level 3 and 128³ chunks (tensorstore's best layout in compare_pyramid.py). Every
time is the whole process, interpreter start and imports included, for both. The limits, also
measured in the same run: zstd-3 compression of the input's data on both cores, and the disk's
write rate with fsync. "of zstd limit" is input MB/s over the compression rate; "of disk
limit" is stored MB/s over the write rate.

Results go to ``benchmarks/results/ingest-scale.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure, settle
from _tools import stored_bytes
from compare_pyramid import machine_limits, pyramid_config

from cellvol.synthetic import SyntheticVolume

HERE = Path(__file__).resolve().parent
CELLVOL = Path(sys.executable).with_name("cellvol")
# (z, y, x) per size in GiB: int16 tomograms and uint8 slice stacks of that many bytes.
MRC_SHAPES = {1: (256, 1024, 2048), 4: (512, 2048, 2048), 16: (1024, 2048, 4096)}
TIFF_SHAPES = {1: (256, 2048, 2048), 4: (1024, 2048, 2048), 16: (2048, 2048, 4096)}
SLAB = 16
# What each input records or is given: MRC voxels of 8 Å; FIB-SEM slices of 8 x 5 x 5 nm.
VOXEL_NM = {"mrc": (0.8, 0.8, 0.8), "tiff": (8.0, 5.0, 5.0)}
SEEDS = {"mrc": 1, "tiff": 2}
DTYPES = {"mrc": "int16", "tiff": "uint8"}
PEER = "tensorstore"
# cellvol as an archive runs it; without the digests; and also with the peer's chunk shape
# (128³, in cellvol's 256³ shards), which writes faster than the default 64³.
TOOLS = ("cellvol", "cellvol --no-digest", "cellvol --no-digest --chunks 128,128,128", PEER)


def make_mrc(size: int, data_dir: Path) -> Path:
    path = data_dir / f"tomo_{size}gib.mrc"
    if path.exists():
        return path
    import mrcfile

    shape = MRC_SHAPES[size]
    volume = SyntheticVolume(shape, dtype=DTYPES["mrc"], seed=SEEDS["mrc"])
    partial = path.with_suffix(".partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with mrcfile.new_mmap(partial, shape=shape, mrc_mode=1, overwrite=True) as mrc:
            for z in range(0, shape[0], SLAB):
                mrc.data[z : z + SLAB] = volume[z : z + SLAB]
            mrc.voxel_size = 8.0
    partial.rename(path)
    return path


def make_tiff_stack(size: int, data_dir: Path) -> Path:
    directory = data_dir / f"fibsem_{size}gib"
    if (directory / "done").exists():
        return directory
    import tifffile

    shape = TIFF_SHAPES[size]
    volume = SyntheticVolume(shape, dtype=DTYPES["tiff"], seed=SEEDS["tiff"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for z in range(0, shape[0], SLAB):
        for i, plane in enumerate(np.asarray(volume[z : z + SLAB])):
            tifffile.imwrite(directory / f"slice_{z + i:05d}.tif", plane)
    (directory / "done").touch()
    return directory


def run(tool: str, kind: str, source: Path, out: Path, size: int) -> dict[str, Any]:
    """Convert ``source`` with one tool in a fresh process; time and memory of the whole run."""
    shutil.rmtree(out, ignore_errors=True)
    if tool == PEER:
        shape = (MRC_SHAPES if kind == "mrc" else TIFF_SHAPES)[size]
        config = pyramid_config(shape, VOXEL_NM[kind])  # the levels cellvol convert makes
        levels = len(config["factors"]) + 1
        command = [sys.executable, str(HERE / "_tools.py"), PEER, str(source), str(out)]
        command += [str(levels), "128", json.dumps(config)]
    else:
        command = [str(CELLVOL), "convert", str(source), str(out)]
        if kind == "tiff":
            command += ["--voxel-size", ",".join(str(v) for v in VOXEL_NM["tiff"])]
        command += tool.split()[1:]  # the flags named in the tool's label
    settle(source)
    result = measure(command)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.output}")
    nbytes = size * 2**30
    stored = stored_bytes(out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "input": kind,
        "size_gib": size,
        "tool": tool,
        "seconds": round(result.seconds, 1),
        "input_mb_per_s": round(nbytes / 1e6 / result.seconds, 1),
        "stored_mb_per_s": round(stored / 1e6 / result.seconds, 1),
        "peak_anon_mib": round(result.peak_anon_mib),
        "peak_rss_mib": round(result.peak_rss_mib),
    }


def add_ratios(rows: list[dict[str, Any]], limits: dict[str, dict[str, float]]) -> None:
    """Each row's speed against the peer on the same input, and against the machine's limits."""
    for row in rows:
        peer = next(
            r
            for r in rows
            if r["tool"] == PEER and r["input"] == row["input"] and r["size_gib"] == row["size_gib"]
        )
        limit = limits[str(row["input"])]
        row["vs_peer"] = round(float(peer["seconds"]) / float(row["seconds"]), 2)
        row["of_zstd_limit"] = round(float(row["input_mb_per_s"]) / limit["zstd3_compress_MBps"], 3)
        row["of_disk_limit"] = round(
            float(row["stored_mb_per_s"]) / limit["disk_write_fsync_MBps"],
            3,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4", help="GiB per input, from 1, 4, 16")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--keep-inputs", action="store_true", help="keep generated inputs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    limits: dict[str, dict[str, float]] = {}
    for kind, shapes in (("mrc", MRC_SHAPES), ("tiff", TIFF_SHAPES)):
        # The same voxels the inputs hold (the generator is deterministic), without reading them.
        data = SyntheticVolume(shapes[1], dtype=DTYPES[kind], seed=SEEDS[kind])
        limits[kind] = machine_limits(data, args.data_dir)
        print(json.dumps({f"limits_{kind}": limits[kind]}), flush=True)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        inputs = {
            "mrc": make_mrc(size, args.data_dir),
            "tiff": make_tiff_stack(size, args.data_dir),
        }
        for kind, path in inputs.items():
            for tool in TOOLS:
                out = args.data_dir / f"ingest_{kind}_{size}.ome.zarr"
                rows.append(run(tool, kind, path, out, size))
                print(json.dumps(rows[-1]), flush=True)
            if not args.keep_inputs:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    add_ratios(rows, limits)
    record = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "command": " ".join(sys.argv),
        "limits": limits,
        "results": rows,
    }
    results = HERE / "results" / "ingest-scale.json"
    results.write_text(json.dumps(record, indent=2) + "\n")
    print(
        "\n| input | size | tool | time (s) | input MB/s | peak anon (MiB) | peak RSS (MiB) "
        f"| vs {PEER} | of zstd limit | of disk limit |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['input']} | {r['size_gib']} GiB | {r['tool']} | {r['seconds']} "
            f"| {r['input_mb_per_s']} | {r['peak_anon_mib']} | {r['peak_rss_mib']} "
            f"| {r['vs_peer']}x | {float(r['of_zstd_limit']):.0%} "
            f"| {float(r['of_disk_limit']):.0%} |"
        )


if __name__ == "__main__":
    main()
