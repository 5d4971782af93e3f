"""One pyramid build per tool, run in a fresh process by compare_pyramid.py.

Usage: python benchmarks/_tools.py TOOL INPUT OUTPUT LEVELS CHUNK [CONFIG-JSON]

OUTPUT is a directory, or ``s3://bucket/prefix`` on the S3 endpoint the environment names
(``AWS_ENDPOINT_URL``, with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``): every
tool then writes through its own S3 client (tensorstore its ``s3`` kvstore, the others s3fs).

Every tool builds the same thing: LEVELS levels with the CONFIG's per-level factors and method
(default: 2x mean; each tool's closest equivalent) from INPUT (a raw ``.npy`` volume, an MRC
file or a directory of TIFF slices: see :func:`load_source`), zstd level 3, CHUNK³ chunks.
Prints one JSON line with the seconds the build itself took, reading the input included
(imports and interpreter start excluded), and the CPU seconds of the process meanwhile.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Output = Path | str
"""A directory, or an ``s3://`` URL (a string: a Path would fold its ``//``)."""

Config = dict[str, Any]
"""``voxel_size``, ``factors`` (one triple per level after the first) and ``method``."""


def _cumulative(factors: list[list[int]]) -> list[list[int]]:
    """Each level's factors from level 0 (the per-level ones multiplied up)."""
    total, out = [1, 1, 1], []
    for step in factors:
        total = [t * f for t, f in zip(total, step, strict=True)]
        out.append(total)
    return out


def is_s3(out: Output) -> bool:
    return str(out).startswith("s3://")


def _kvstore(out: Output, level: int) -> dict[str, Any]:
    """tensorstore's kvstore for ``level`` of the pyramid at ``out``."""
    if not is_s3(out):
        return {"driver": "file", "path": str(Path(out) / str(level))}
    bucket, _, prefix = str(out).removeprefix("s3://").partition("/")
    return {
        "driver": "s3",
        "bucket": bucket,
        "path": f"{prefix}/{level}/",
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "aws_region": os.environ.get("AWS_REGION", "us-east-1"),
    }


def build_cellvol(
    source: np.ndarray, out: Output, chunk: int, config: Config, tune: bool = True
) -> None:
    """cellvol in the job every tool runs; ``tune``: the process opts in to malloc tuning."""
    import cellvol

    if tune:
        cellvol.tune_allocator()
    cellvol.write_pyramid(
        source,
        out,
        tuple(config["voxel_size"]),
        chunks=(chunk,) * 3,
        factors=[tuple(f) for f in config["factors"]],
        method=config["method"],
        # The job compared is zstd at every level, as the other tools write it.
        uncompressed_fraction=0,
        overwrite=True,
        name="bench",
    )


def build_cellvol_default(source: np.ndarray, out: Output, chunk: int, config: Config) -> None:
    """cellvol with its own default layout (64³ chunks in 256³ shards, coarse levels raw)."""
    import cellvol

    cellvol.tune_allocator()
    cellvol.write_pyramid(
        source,
        out,
        tuple(config["voxel_size"]),
        factors=[tuple(f) for f in config["factors"]],
        method=config["method"],
        overwrite=True,
        name="bench",
    )


def build_tensorstore(
    source: np.ndarray, out: Output, chunk: int, config: Config, sync: bool = True
) -> None:
    """tensorstore's pipeline. Its file store fsyncs every chunk it writes by default, as
    cellvol syncs every shard; ``sync=False`` turns that off, as zarr-python never syncs."""
    import tensorstore as ts

    context = ts.Context({"file_io_sync": sync})

    shapes = [list(source.shape)]
    for step in config["factors"]:
        shapes.append([-(-n // f) for n, f in zip(shapes[-1], step, strict=True)])
    arrays = []
    for level, level_shape in enumerate(shapes):
        spec = {
            "driver": "zarr3",
            "kvstore": _kvstore(out, level),
            "metadata": {
                "shape": level_shape,
                "data_type": str(source.dtype),
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [min(chunk, n) for n in level_shape]},
                },
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "zstd", "configuration": {"level": 3}},
                ],
            },
            "create": True,
            "delete_existing": True,
        }
        arrays.append(ts.open(spec, context=context).result())
    arrays[0].write(source).result()
    for level, step in enumerate(config["factors"], start=1):
        view = ts.downsample(arrays[level - 1], list(step), config["method"])
        arrays[level].write(view).result()


def build_ome_zarr(source: np.ndarray, out: Output, chunk: int, config: Config) -> None:
    import dask.array as da
    import zarr
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(out, mode="w")
    image = da.from_array(source, chunks=(chunk,) * 3)
    factors = [dict(zip("zyx", f, strict=True)) for f in _cumulative(config["factors"])]
    write_image(
        image=image,
        group=group,
        scale_factors=factors,
        # ome-zarr-py has no mode: labels get nearest, its closest method.
        method=Methods.NEAREST if config["method"] == "mode" else Methods.LOCAL_MEAN,
        axes="zyx",
        storage_options={"chunks": (chunk,) * 3, "compressor": ZstdCodec(level=3)},
    )


def build_ngff_zarr(source: np.ndarray, out: Output, chunk: int, config: Config) -> None:
    import dask.array as da
    import ngff_zarr as nz
    import zarr
    from zarr.codecs import ZstdCodec

    image = nz.to_ngff_image(da.from_array(source, chunks=(chunk,) * 3), dims=["z", "y", "x"])
    factors = [dict(zip("zyx", f, strict=True)) for f in _cumulative(config["factors"])]
    method = (
        nz.Methods.DASK_IMAGE_MODE if config["method"] == "mode" else nz.Methods.DASK_BIN_SHRINK
    )
    multiscales = nz.to_multiscales(image, scale_factors=factors, method=method, chunks=chunk)
    nz.to_ngff_zarr(str(out), multiscales, compressors=[ZstdCodec(level=3)])
    zarr.open_group(out, mode="r")  # it must have written a readable group


TOOLS: dict[str, Callable[[np.ndarray, Output, int, Config], None]] = {
    "cellvol": build_cellvol,
    "cellvol-default-layout": build_cellvol_default,
    "cellvol-untuned": functools.partial(build_cellvol, tune=False),
    "tensorstore": build_tensorstore,
    "tensorstore-nosync": functools.partial(build_tensorstore, sync=False),
    "ome-zarr": build_ome_zarr,
    "ngff-zarr": build_ngff_zarr,
}

# Each tool's modules, imported before the clock starts: the build alone is timed. (cellvol
# imports its writer on the first write_pyramid call, and the writer imports ome-zarr-models,
# which validates the metadata it writes, on first use.)
_CELLVOL_WRITER = [
    "cellvol.write._pyramid",
    "ome_zarr_models.v05.image",
    "ome_zarr_models.common.omero",
]
IMPORTS = {
    "cellvol": _CELLVOL_WRITER,
    "cellvol-default-layout": _CELLVOL_WRITER,
    "cellvol-untuned": _CELLVOL_WRITER,
    "tensorstore": ["tensorstore"],
    "tensorstore-nosync": ["tensorstore"],
    "ome-zarr": ["dask.array", "zarr", "ome_zarr.writer", "ome_zarr.scale"],
    "ngff-zarr": ["ngff_zarr", "zarr"],
}


def stored_bytes(root: Output) -> int:
    """Bytes of every file (or S3 object) below ``root``: what a build stored."""
    if is_s3(root):
        import s3fs

        return int(s3fs.S3FileSystem(skip_instance_cache=True).du(str(root)))
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# Open inputs stay referenced here: an MRC file's array is a view of its open memory map.
_OPEN: list[Any] = []


def load_source(path: Path) -> np.ndarray:
    """The input as an array, read the way a user of the peers would read it.

    ``.npy``: memory-mapped. ``.mrc``: mrcfile's memory map of its data. A directory of
    ``.tif`` slices: tifffile reads the stack into a temporary memory-mapped file (its own way
    of reading a stack larger than memory), so the reading is part of the build's time.
    """
    if path.is_dir():
        import tifffile

        files = sorted(path.glob("*.tif"))
        if not files:
            raise SystemExit(f"{path}: no .tif slices")
        return np.asarray(tifffile.imread(files, out="memmap", ioworkers=os.cpu_count()))
    if path.suffix == ".mrc":
        import mrcfile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns about headers it can still read
            mrc = mrcfile.mmap(path, mode="r")
        _OPEN.append(mrc)
        return np.asarray(mrc.data)
    return np.load(path, mmap_mode="r")


def main() -> None:
    tool, source_path, out, levels, chunk = sys.argv[1:6]
    config: Config = (
        json.loads(sys.argv[6])
        if len(sys.argv) > 6
        else {"voxel_size": [1.0] * 3, "factors": [[2, 2, 2]] * (int(levels) - 1), "method": "mean"}
    )
    for module in IMPORTS[tool]:
        importlib.import_module(module)
    out_path: Output = out if is_s3(out) else Path(out)
    if not is_s3(out_path):  # an S3 output goes into a fresh bucket
        shutil.rmtree(out_path, ignore_errors=True)
    started, cpu = time.perf_counter(), time.process_time()
    source = load_source(Path(source_path))  # inside the clock: reading a TIFF stack is work
    TOOLS[tool](source, out_path, int(chunk), config)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = stored_bytes(out_path)
    # CPU time of every thread of the build: steadier than wall time on a shared machine.
    report = {"tool": tool, "build_seconds": seconds, "cpu_seconds": cpu, "stored_bytes": stored}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
