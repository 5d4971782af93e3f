"""Ingest in bounded memory: convert generated MRC tomograms and TIFF slice stacks of growing size.

    .venv/bin/python benchmarks/ingest_scale.py                  # 1 and 4 GiB of each
    .venv/bin/python benchmarks/ingest_scale.py --sizes 1,4,16   # the full run

Inputs are written once to ``--data-dir`` (default /tmp/cellvol-bench), slab by slab from
cellvol.testing.SyntheticVolume so they never sit whole in memory: an int16 MRC tomogram
(mode 1, 8 Å voxels) and a directory of uint8 TIFF slices (a FIB-SEM export, voxels of
8 nm in z and 5 nm in y and x).
Each is converted by ``cellvol convert`` in a fresh process with the default 1 GiB memory
limit and SHA-256 digests on; the parent samples the child's memory every 10 ms. The claim to
check: the peak does not grow with the input's size, so an input larger than RAM converts the
same way. Results go to ``benchmarks/results/ingest-scale.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure

HERE = Path(__file__).resolve().parent
CELLVOL = Path(sys.executable).with_name("cellvol")
# (z, y, x) per size in GiB: int16 tomograms and uint8 slice stacks of that many bytes.
MRC_SHAPES = {1: (256, 1024, 2048), 4: (512, 2048, 2048), 16: (1024, 2048, 4096)}
TIFF_SHAPES = {1: (256, 2048, 2048), 4: (1024, 2048, 2048), 16: (2048, 2048, 4096)}
SLAB = 16


def make_mrc(size: int, data_dir: Path) -> Path:
    path = data_dir / f"tomo_{size}gib.mrc"
    if path.exists():
        return path
    import mrcfile

    from cellvol.testing import SyntheticVolume

    shape = MRC_SHAPES[size]
    volume = SyntheticVolume(shape, dtype="int16", seed=1)
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

    from cellvol.testing import SyntheticVolume

    shape = TIFF_SHAPES[size]
    volume = SyntheticVolume(shape, dtype="uint8", seed=2)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for z in range(0, shape[0], SLAB):
        for i, plane in enumerate(np.asarray(volume[z : z + SLAB])):
            tifffile.imwrite(directory / f"slice_{z + i:05d}.tif", plane)
    (directory / "done").touch()
    return directory


def convert(kind: str, source: Path, out: Path, size: int) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    command = [str(CELLVOL), "convert", str(source), str(out)]
    if kind == "tiff":
        command += ["--voxel-size", "8,5,5"]
    result = measure(command)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.output}")
    nbytes = size * 2**30
    shutil.rmtree(out, ignore_errors=True)
    return {
        "input": kind,
        "size_gib": size,
        "seconds": round(result.seconds, 1),
        "input_mb_per_s": round(nbytes / 1e6 / result.seconds, 1),
        "peak_anon_mib": round(result.peak_anon_mib),
        "peak_rss_mib": round(result.peak_rss_mib),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4", help="GiB per input, from 1, 4, 16")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--keep-inputs", action="store_true", help="keep generated inputs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        inputs = {
            "mrc": make_mrc(size, args.data_dir),
            "tiff": make_tiff_stack(size, args.data_dir),
        }
        for kind, path in inputs.items():
            row = convert(kind, path, args.data_dir / f"ingest_{kind}_{size}.ome.zarr", size)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.keep_inputs:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    record = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "command": " ".join(sys.argv),
        "results": rows,
    }
    results = HERE / "results" / "ingest-scale.json"
    results.write_text(json.dumps(record, indent=2) + "\n")
    print("\n| input | size | time (s) | input MB/s | peak anon (MiB) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['input']} | {r['size_gib']} GiB | {r['seconds']} | {r['input_mb_per_s']} "
            f"| {r['peak_anon_mib']} | {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
