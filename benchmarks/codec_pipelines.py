"""Codec pipelines on cellvol's layout: its own shard encoder and chunk reader beside zarr's.

    .venv/bin/pip install -r benchmarks/requirements.txt      # tensorstore, zarrs
    .venv/bin/python benchmarks/codec_pipelines.py             # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/codec_pipelines.py --report benchmarks/results/codec-pipelines.json

Does cellvol's hand-written codec path still earn its place? On write, cellvol encodes whole
shards itself (``cellvol._codec._shard.encode_shard``) instead of going through zarr's codec
pipeline; on read, ``cellvol.open(...)[...]`` decodes chunks with its direct reader
(``cellvol._codec._reader.ChunkReader``). This measures both against the pipelines that could
replace them, on the same input and one layout, exactly what ``cellvol.write_pyramid`` writes
at level 0: uint8, 64³ chunks in 256³ shards, zstd level 3, a CRC32C per chunk and one on the
shard index. Every figure is measured in a fresh process (``_measure.measure``).

Input: the 512 MiB synthetic tomogram ``SyntheticVolume((512, 1024, 1024), "uint8", seed=0)``,
written once to a raw ``.npy`` in ``--data-dir`` and memory-mapped by every tool.

Tools: ``cellvol``; ``tensorstore`` (zarr3 driver, file kvstore); ``zarr`` (zarr-python with its
default ``BatchedCodecPipeline``); ``zarr-fused`` (zarr-python's opt-in ``FusedCodecPipeline``);
``zarrs`` (the Rust pipeline of the ``zarrs`` package, with ``codec_pipeline.strict`` so that it
cannot fall back to zarr's own pipeline unseen). A tool that is not installed, or fails, is
skipped with its reason.

Read: random 512 x 512 planes perpendicular to z, y and x (XY, XZ, YZ; the same seeded
positions for every tool) of level 0 of a store cellvol wrote, files in the page cache, every
cache off (cellvol ``ChunkCache(0)``, tensorstore ``cache_pool`` of 0 bytes; zarr keeps none).
Every tool's planes are checked equal to the source before any is timed. Median and p90 ms per
plane, beside the floor: the plane's chunks decoded and checksummed at the machine's rate.
zarrs 0.2.3 raises ``UnsupportedVIndexingError`` on an integer index for planes that cross
several shards; it then reads every plane as a 1-voxel-thick slab (the same chunks).

Write: level 0 alone, the whole 512 MiB, into ``/dev/shm`` (memory: no disk) and onto the
data directory's disk; best of ``--repeat`` (round robin). cellvol is ``write_pyramid(...,
n_levels=1)``, which fsyncs every shard as it writes it and has no way to skip that;
``cellvol-encode_shard`` is its encoder alone (``encode_shard`` on every core, each shard one
file, no fsync, no ledger), the part a zarr pipeline would replace. tensorstore fsyncs too (its
``file_io_sync`` default). zarr, zarr-fused and zarrs write shard-aligned slabs and never fsync:
the time an fsync of every file they wrote takes afterwards is reported beside them (on
``/dev/shm`` it is nothing). Every store written is checked afterwards: the same codecs in its
metadata as cellvol's, every voxel equal to the source, read back with zarr-python's default
pipeline, and whether its shards are byte for byte those cellvol wrote.

Machine limits (as ``compare_pyramid.machine_limits``; 64³ chunks of the input, both cores, best
of five, measured before and after the tools and the better kept, as the machine is shared):
zstd-3 encode and decode, CRC32C, and the write rate with fsync of each write target. The
floors add a chunk's zstd and CRC32C times. Results:
``benchmarks/results/codec-pipelines.json`` and Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))
from _inputs import write_synthetic_npy
from _measure import measure, settle
from _tools import stored_bytes
from read_planes import floor_ms, random_planes, summary, time_reads

HERE = Path(__file__).resolve().parent
SHAPE = (512, 1024, 1024)
CHUNKS = (64, 64, 64)
SHARDS = (256, 256, 256)
ZSTD_LEVEL = 3
# The zarr-python pipelines compared, by the ``codec_pipeline.path`` that selects each.
PIPELINES = {
    "zarr": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarr-fused": "zarr.core.codec_pipeline.FusedCodecPipeline",
    "zarrs": "zarrs.ZarrsCodecPipeline",
}
READ_TOOLS = ["cellvol", "tensorstore", "zarr", "zarr-fused", "zarrs"]
WRITE_TOOLS = ["cellvol", "cellvol-encode_shard", "tensorstore", "zarr", "zarr-fused", "zarrs"]
# Tools whose write is durable when it returns: they fsync what they write.
SYNCING = {"cellvol", "tensorstore"}
# The package each tool needs beyond cellvol's own dependencies.
PACKAGES = {"tensorstore": "tensorstore", "zarrs": "zarrs"}

Reader = Callable[[tuple[Any, ...]], Any]
Array = npt.NDArray[Any]


# Input, store and machine limits ------------------------------------------------------------


def make_input(shape: tuple[int, int, int], data_dir: Path) -> Path:
    """Write the synthetic uint8 tomogram once (as compare_pyramid.make_input does)."""
    path = data_dir / f"codec_{'x'.join(map(str, shape))}_uint8.npy"
    return write_synthetic_npy(path, shape)


def build_read_store(source_path: Path, data_dir: Path) -> Path:
    """Level 0 as cellvol writes it, built once per input; every tool reads this store."""
    store = data_dir / f"codec-read-{source_path.stem}.zarr"
    marker = store.with_suffix(".done")
    if not marker.exists():
        import cellvol

        cellvol.write_pyramid(
            np.load(source_path, mmap_mode="r"),
            store,
            voxel_size=(1, 1, 1),
            n_levels=1,
            overwrite=True,
            name="bench",
        )
        marker.write_text(str(source_path))
    return store


def chunk_blocks(data: Array) -> list[Array]:
    """The 64³ chunks of the input's first 256 x 512 x 1024 voxels (at most): 128 MiB."""
    return [
        np.ascontiguousarray(data[z : z + 64, y : y + 64, x : x + 64])
        for z in range(0, min(256, data.shape[0]), 64)
        for y in range(0, min(512, data.shape[1]), 64)
        for x in range(0, min(1024, data.shape[2]), 64)
    ]


def codec_limits(data: Array, tries: int = 5) -> dict[str, float]:
    """MB/s of voxels through zstd-3 and CRC32C on 64³ chunks of the input, on every core.

    Each rate is the best of ``tries``. Encoding is numcodecs' (what ``encode_shard`` calls);
    decoding with numcodecs (a context per chunk) and with python-zstandard (a context per
    thread, reused), as ``read_planes.decode_limits``; the CRC32C of the stored bytes, per
    voxel MB. :func:`add_floors` combines them into the floors.
    """
    import google_crc32c
    import zstandard
    from numcodecs import Zstd

    blocks = chunk_blocks(data)
    total = sum(block.nbytes for block in blocks)
    codec = Zstd(level=ZSTD_LEVEL, checksum=False)
    encoded = [codec.encode(block) for block in blocks]
    local = threading.local()

    def reused_context(frame: bytes) -> bytes:
        if not hasattr(local, "context"):
            local.context = zstandard.ZstdDecompressor()
        return local.context.decompress(frame)  # type: ignore[no-any-return]

    work: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        "zstd3_encode": (codec.encode, blocks),
        "zstd3_decode_numcodecs": (codec.decode, encoded),
        "zstd3_decode_zstandard": (reused_context, encoded),
        "crc32c": (google_crc32c.value, encoded),
    }
    rates: dict[str, float] = {}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for name, (function, items) in work.items():
            best = 0.0
            for _ in range(tries):
                started = time.perf_counter()
                list(pool.map(function, items))
                best = max(best, total / (time.perf_counter() - started) / 1e6)
            rates[name] = round(best, 1)
    rates["compression_ratio"] = round(total / sum(len(e) for e in encoded), 3)
    return rates


def add_floors(rates: dict[str, Any]) -> None:
    """The floors of a checksummed chunk: zstd-3 and a CRC32C, one after the other.

    Written: encode, then the CRC of the stored bytes; read: the CRC, then decode with the
    faster of the two decoders. Each step's time per voxel adds up.
    """
    decode = max(rates["zstd3_decode_numcodecs"], rates["zstd3_decode_zstandard"])
    for name, rate in (
        ("zstd3_encode_crc32c", rates["zstd3_encode"]),
        ("zstd3_decode_crc32c", decode),
    ):
        rates[name] = round(1 / (1 / rate + 1 / rates["crc32c"]), 1)


def write_rate(directory: Path, nbytes: int = 2**29) -> float:
    """MB/s of writing ``nbytes`` into ``directory`` and fsyncing it (compare_pyramid's probe)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / "write-probe.bin"
    block = os.urandom(2**24)
    started = time.perf_counter()
    with probe.open("wb") as f:
        for _ in range(nbytes // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    rate = nbytes / (time.perf_counter() - started) / 1e6
    probe.unlink()
    return round(rate, 1)


# The tools, each run in a worker process ----------------------------------------------------


def use_pipeline(tool: str) -> str:
    """Select ``tool``'s zarr codec pipeline for the whole process; return its class path.

    zarr reads ``codec_pipeline.path`` when an array is opened and again, in its sharding
    codec, for the inner chunks, so it is set for the process and never reset.
    ``codec_pipeline.strict`` makes zarrs raise where it would otherwise fall back to zarr's
    own pipeline with a warning; zarrs checks the CRC32Cs (``validate_checksums``) as the
    other readers do.
    """
    import zarr

    zarr.config.set(
        {
            "codec_pipeline.path": PIPELINES[tool],
            "codec_pipeline.strict": True,
            "codec_pipeline.validate_checksums": True,
        }
    )
    return PIPELINES[tool]


def pipeline_name(array: Any) -> str:
    """The class of the codec pipeline a zarr array really uses."""
    return type(array._async_array.codec_pipeline).__name__


def open_reader(tool: str, store: Path) -> tuple[Reader, str]:
    """Read planes of level 0 of ``store`` with ``tool``, no cache; and what reads them."""
    if tool == "cellvol":
        import cellvol

        volume = cellvol.open(store, cache=cellvol.ChunkCache(0))
        return volume.__getitem__, "cellvol ChunkReader"
    level0 = str(store / "0")
    if tool == "tensorstore":
        import tensorstore as ts

        array = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": level0},
                "context": {"cache_pool": {"total_bytes_limit": 0}},
                "open": True,
            }
        ).result()
        return (lambda key: array[key].read().result()), "tensorstore zarr3 driver"
    use_pipeline(tool)
    import zarr

    opened = zarr.open_array(level0, mode="r")
    return (lambda key: opened[key]), pipeline_name(opened)


def thick(read: Reader) -> Reader:
    """``read`` with each plane's integer index given as a 1-voxel slice, the axis dropped after."""

    def slab(key: tuple[Any, ...]) -> Any:
        axes = tuple(a for a, k in enumerate(key) if isinstance(k, int))
        wide = tuple(slice(k, k + 1) if isinstance(k, int) else k for k in key)
        return np.asarray(read(wide)).squeeze(axis=axes)

    return slab


def mismatches(read: Reader, planes: dict[str, list[tuple[Any, ...]]], source: Array) -> list[str]:
    return [
        f"{orientation} {key}"
        for orientation, keys in planes.items()
        for key in keys
        if not np.array_equal(read(key), source[key])
    ]


def read_worker(tool: str, store: Path, source_path: Path, count: int, seed: int) -> dict[str, Any]:
    """Check every plane against the source, then time each; the worker's JSON result.

    A reader that raises on an integer index (zarrs 0.2.3 does, for planes across several
    shards) reads every plane as a 1-voxel-thick slab instead: the same chunks and voxels.
    """
    source = np.load(source_path, mmap_mode="r")
    read, engine = open_reader(tool, store)
    planes = random_planes(source.shape, count, seed)
    result: dict[str, Any] = {}
    try:
        wrong = mismatches(read, planes, source)
    except Exception as error:
        result["integer_index_error"] = f"{type(error).__module__}.{type(error).__name__}: {error}"
        read, engine = thick(read), f"{engine}, planes as 1-voxel slabs"
        wrong = mismatches(read, planes, source)
    result["engine"] = engine
    if wrong:
        return {**result, "verified": False, "error": f"planes differ: {wrong[:3]}"}
    result["verified"] = True
    for orientation, keys in planes.items():
        result[orientation] = summary(time_reads(read, keys))
    return result


def create_zarr_level(out: Path, shape: tuple[int, ...], dtype: Any) -> Any:
    """The level-0 array cellvol creates, through zarr-python's public API.

    The CRC32C per chunk is the ``crc32c`` bytes-to-bytes codec after zstd in the inner
    chunks' ``compressors``; with ``shards`` given, ``create_array`` wraps them in a
    ``sharding_indexed`` codec whose index is checksummed too (its default ``index_codecs``:
    bytes, crc32c). This is what ``cellvol._codec._shard.sharding_codecs(3)`` passes.
    """
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

    return zarr.create_array(
        store=str(out / "0"),
        shape=shape,
        dtype=dtype,
        chunks=CHUNKS,
        shards=SHARDS,
        serializer=BytesCodec(endian="little"),
        compressors=[ZstdCodec(level=ZSTD_LEVEL, checksum=False), Crc32cCodec()],
        fill_value=0,
        dimension_names=("z", "y", "x"),
        config={"write_empty_chunks": True},
        overwrite=True,
    )


def write_cellvol(source: Array, out: Path) -> str:
    import cellvol

    cellvol.write_pyramid(source, out, voxel_size=(1, 1, 1), n_levels=1, overwrite=True)
    return "cellvol encode_shard (write_pyramid)"


def shard_indices(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    return np.ndindex(*(-(-n // s) for n, s in zip(shape, SHARDS, strict=True)))


def write_cellvol_encoder(source: Array, out: Path) -> str:
    """``encode_shard`` on every core, each shard stored as one file: the encoder alone."""
    from cellvol._codec._shard import encode_shard

    create_zarr_level(out, source.shape, source.dtype)
    root = out / "0"

    def one(index: tuple[int, ...]) -> None:
        region = tuple(slice(i * s, (i + 1) * s) for i, s in zip(index, SHARDS, strict=True))
        parts = encode_shard(source[region], CHUNKS, SHARDS, ZSTD_LEVEL)
        path = root.joinpath("c", *map(str, index))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.writelines(parts)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, shard_indices(source.shape)))
    return "cellvol encode_shard (alone)"


def write_zarr(tool: str, source: Array, out: Path) -> str:
    """zarr-python with ``tool``'s pipeline, one shard-aligned slab (256 planes) at a time."""
    use_pipeline(tool)
    array = create_zarr_level(out, source.shape, source.dtype)
    for z in range(0, source.shape[0], SHARDS[0]):
        array[z : z + SHARDS[0]] = source[z : z + SHARDS[0]]
    return pipeline_name(array)


def write_tensorstore(source: Array, out: Path) -> str:
    """tensorstore, the same layout, a transaction per shard-aligned slab, so that each shard is
    encoded and written whole, once. Its file store fsyncs what it writes by default
    (``file_io_sync``)."""
    import tensorstore as ts

    bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(out / "0")},
        "metadata": {
            "shape": list(source.shape),
            "data_type": str(source.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(SHARDS)}},
            "fill_value": 0,
            "dimension_names": ["z", "y", "x"],
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": list(CHUNKS),
                        "codecs": [
                            bytes_codec,
                            {
                                "name": "zstd",
                                "configuration": {"level": ZSTD_LEVEL, "checksum": False},
                            },
                            {"name": "crc32c"},
                        ],
                        "index_codecs": [bytes_codec, {"name": "crc32c"}],
                        "index_location": "end",
                    },
                }
            ],
        },
        "create": True,
        "delete_existing": True,
    }
    array = ts.open(spec, context=ts.Context({"file_io_sync": True})).result()
    for z in range(0, source.shape[0], SHARDS[0]):
        with ts.Transaction() as transaction:
            slab = array.with_transaction(transaction)[z : z + SHARDS[0]]
            slab.write(source[z : z + SHARDS[0]]).result()
    return "tensorstore zarr3 driver"


WRITERS: dict[str, Callable[[Array, Path], str]] = {
    "cellvol": write_cellvol,
    "cellvol-encode_shard": write_cellvol_encoder,
    "tensorstore": write_tensorstore,
    **{tool: functools.partial(write_zarr, tool) for tool in PIPELINES},
}
# Each tool's modules, imported before the clock starts.
IMPORTS = {
    "cellvol": ["cellvol.write", "ome_zarr_models.v05.image", "ome_zarr_models.common.omero"],
    "cellvol-encode_shard": ["cellvol._codec._shard", "zarr"],
    "tensorstore": ["tensorstore"],
    "zarr": ["zarr"],
    "zarr-fused": ["zarr"],
    "zarrs": ["zarr", "zarrs"],
}


def sync_tree(root: Path) -> None:
    """fsync every file below ``root``, then every directory, deepest first."""
    files: list[Path] = []
    directories = [root]
    for path in root.rglob("*"):
        (directories if path.is_dir() else files).append(path)
    for path in [*files, *sorted(directories, key=lambda p: len(p.parts), reverse=True)]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_worker(tool: str, source_path: Path, out: Path) -> dict[str, Any]:
    for module in IMPORTS[tool]:
        importlib.import_module(module)
    source = np.load(source_path, mmap_mode="r")
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    engine = WRITERS[tool](source, out)
    result: dict[str, Any] = {"engine": engine, "seconds": time.perf_counter() - started}
    if tool not in SYNCING:
        started = time.perf_counter()
        sync_tree(out)
        result["fsync_after_seconds"] = time.perf_counter() - started
    return result


def worker(argv: list[str]) -> None:
    """``worker read TOOL STORE SOURCE COUNT SEED`` or ``worker write TOOL SOURCE OUT``."""
    kind, tool = argv[0], argv[1]
    if kind == "read":
        store, source, count, seed = argv[2:6]
        result = read_worker(tool, Path(store), Path(source), int(count), int(seed))
    else:
        source, out = argv[2:4]
        result = write_worker(tool, Path(source), Path(out))
    print(json.dumps(result))


# The parent: running, checking and reporting ------------------------------------------------


def missing(tool: str) -> str | None:
    """Why ``tool`` cannot run here, or None."""
    package = PACKAGES.get(tool)
    if package and importlib.util.find_spec(package) is None:
        return f"{package} is not installed (.venv/bin/pip install -r benchmarks/requirements.txt)"
    return None


def run_worker(arguments: list[str]) -> dict[str, Any]:
    """Run a worker in a fresh process; its JSON result with peak memory, or its error."""
    result = measure([sys.executable, str(Path(__file__).resolve()), "worker", *arguments])
    record: dict[str, Any] = {
        "peak_anon_mib": round(result.peak_anon_mib, 1),
        "peak_rss_mib": round(result.peak_rss_mib, 1),
    }
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = result.output.strip().splitlines()[-6:]
        record["error"] = f"exit {result.returncode}: " + " | ".join(tail)
        return record
    record.update(json.loads(lines[-1]))
    return record


def codecs_of(level: Path) -> Any:
    """A level's chunk grid and codec chain from its metadata, defaults spelt out.

    tensorstore leaves out what the spec defaults or what does not apply: an empty
    configuration, the shard index's place (``end``), and the byte order of uint8 chunks
    (meaningless for one byte: counted as little-endian here).
    """

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(v) for v in value]
        if not isinstance(value, dict):
            return value
        value = {k: clean(v) for k, v in value.items() if v != {}}
        if value.get("name") == "bytes":
            value["configuration"] = {"endian": "little", **value.get("configuration", {})}
        if value.get("name") == "sharding_indexed":
            value["configuration"] = {"index_location": "end", **value["configuration"]}
        return value

    metadata = json.loads((level / "zarr.json").read_text())
    return {"chunk_grid": metadata["chunk_grid"], "codecs": clean(metadata["codecs"])}


def same_bytes(level: Path, reference: Path) -> bool:
    """Whether every shard of ``level`` is byte for byte the reference store's."""
    ours = sorted(p.relative_to(level) for p in (level / "c").rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(reference) for p in (reference / "c").rglob("*") if p.is_file())
    return ours == theirs and all(
        (level / p).read_bytes() == (reference / p).read_bytes() for p in ours
    )


def verify_store(out: Path, source: Array, reference: Any) -> str | None:
    """None if ``out``'s level 0 has cellvol's codecs and equals ``source``; else what differs.

    Read back with zarr-python's default pipeline (the parent never selects another).
    """
    import zarr

    layout = codecs_of(out / "0")
    if layout != reference:
        return f"layout differs from cellvol's: {json.dumps(layout)}"
    array = zarr.open_array(str(out / "0"), mode="r")
    if tuple(array.shape) != source.shape or array.dtype != source.dtype:
        return f"shape or dtype differs: {array.shape} {array.dtype}"
    for z in range(0, source.shape[0], 64):
        if not np.array_equal(array[z : z + 64], source[z : z + 64]):
            return f"voxels differ in planes {z}-{z + 63}"
    return None


def run_reads(tools: list[str], store: Path, source_path: Path, count: int) -> list[dict[str, Any]]:
    """Every tool's planes, in a fresh process each (the same seeded planes for all)."""
    rows: list[dict[str, Any]] = []
    for tool in tools:
        reason = missing(tool)
        row: dict[str, Any] = {"tool": tool}
        if reason is None:
            row.update(run_worker(["read", tool, str(store), str(source_path), str(count), "0"]))
            reason = row.get("error")
        if reason is not None:
            row["skipped"] = reason
            print(f"read, {tool}: skipped: {reason}", file=sys.stderr, flush=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def add_plane_floors(
    rows: list[dict[str, Any]], shape: tuple[int, ...], count: int, rate: float
) -> None:
    """Each plane's floor beside each tool's time: its chunks decoded and checked at ``rate``."""
    planes = random_planes(shape, count, seed=0)
    floors = {name: floor_ms(keys, shape, CHUNKS, rate) for name, keys in planes.items()}
    for row in rows:
        if "skipped" in row:
            continue
        for name, floor in floors.items():
            row[name]["floor_ms"] = floor
            row[name]["of_floor"] = round(floor / row[name]["median_ms"], 3)


def run_writes(
    tools: list[str], targets: dict[str, Path], source_path: Path, repeat: int, store: Path
) -> list[dict[str, Any]]:
    """Every tool into every target, round robin, ``repeat`` times; keep the fastest of each."""
    source = np.load(source_path, mmap_mode="r")
    reference = codecs_of(store / "0")
    rows: dict[tuple[str, str], dict[str, Any]] = {
        (tool, target): {"tool": tool, "target": target} for tool in tools for target in targets
    }
    skipped: dict[str, str] = {}
    for tool in tools:
        reason = missing(tool)
        if reason is not None:
            skipped[tool] = reason
            print(f"write, {tool}: skipped: {reason}", file=sys.stderr, flush=True)
    for attempt in range(repeat):
        for target, directory in targets.items():
            for tool in tools:
                if tool in skipped:
                    continue
                out = directory / f"{tool}.zarr"
                shutil.rmtree(out, ignore_errors=True)
                settle(source_path)  # no dirty pages left; the input cached as if read
                record = run_worker(["write", tool, str(source_path), str(out)])
                row = rows[tool, target]
                if "error" in record:
                    skipped[tool] = record["error"]
                    print(f"write, {tool}: failed: {record['error']}", file=sys.stderr, flush=True)
                    shutil.rmtree(out, ignore_errors=True)
                    continue
                if attempt == 0:  # every store checked once: the tools are deterministic
                    row["stored_bytes"] = stored_bytes(out / "0")
                    row["bytes_identical_to_cellvol"] = same_bytes(out / "0", store / "0")
                    problem = verify_store(out, source, reference)
                    row["verified"] = problem is None
                    if problem is not None:
                        row["verify_error"] = problem
                        print(f"write, {tool}, {target}: {problem}", file=sys.stderr, flush=True)
                shutil.rmtree(out, ignore_errors=True)
                record["seconds"] = round(record["seconds"], 3)
                row.setdefault("every_seconds", []).append(record["seconds"])
                if "fsync_after_seconds" in record:
                    row.setdefault("every_fsync_after_seconds", []).append(
                        round(record["fsync_after_seconds"], 3)
                    )
                if record["seconds"] <= min(row["every_seconds"]):
                    row.update({k: v for k, v in record.items() if k != "seconds"})
                    row["seconds"] = record["seconds"]
                print(json.dumps({"tool": tool, "target": target, **record}), flush=True)
    out_rows = []
    for (tool, _target), row in rows.items():
        if tool in skipped:
            row["skipped"] = skipped[tool]
        row["fsync"] = tool in SYNCING
        out_rows.append(row)
    return out_rows


def print_report(report: dict[str, Any]) -> None:
    """Markdown tables of a run: reads beside the decode floor, writes beside the encode floor."""
    limits = report["limits"]
    mb = float(np.prod(report["input_shape"])) / 1e6
    print(
        f"\n{report['case']}; {report['machine']['cpus']} cores. Machine floor on 64³ chunks: "
        f"zstd-3 + CRC32C decode {limits['zstd3_decode_crc32c']:.0f} MB/s, encode "
        f"{limits['zstd3_encode_crc32c']:.0f} MB/s (zstd alone: decode "
        f"{limits['zstd3_decode_numcodecs']:.0f} / {limits['zstd3_decode_zstandard']:.0f} MB/s "
        "with numcodecs / zstandard, "
        f"{limits['zstd3_encode']:.0f} MB/s encode); ratio {limits['compression_ratio']:.2f}; "
        + ", ".join(f"write + fsync into {t} {r:.0f} MB/s" for t, r in limits["write_MBps"].items())
        + "\n"
    )
    print("Read: random 512 x 512 planes of level 0, page cache warm, no chunk cache (ms)\n")
    print("| tool | reads with | XY median / p90 | XZ median / p90 | YZ median / p90 | of floor |")
    print("|---|---|---|---|---|---|")
    orientations = ("XY", "XZ", "YZ")
    for row in report["reads"]:
        if "skipped" in row:
            print(f"| {row['tool']} | skipped: {row['skipped'][:120]} | | | | |")
            continue
        timings = " | ".join(
            f"{row[o]['median_ms']:.1f} / {row[o]['p90_ms']:.1f}" for o in orientations
        )
        share = " / ".join(f"{row[o]['of_floor']:.0%}" for o in orientations)
        print(f"| {row['tool']} | {row['engine']} | {timings} | {share} |")
    first = next((r for r in report["reads"] if "skipped" not in r), None)
    if first is not None:
        floors = " | ".join(f"{first[o]['floor_ms']:.1f}" for o in orientations)
        print(f"| floor: the chunks' zstd-3 + CRC32C decode | | {floors} | 100% |")
    targets = list(limits["write_MBps"])
    print(f"\nWrite: level 0, {mb:.0f} MB, best of {report['repeat']} (s, MB/s of input)\n")
    header = " | ".join(f"{t} s | MB/s" for t in targets)
    print(
        f"| tool | fsyncs | {header} | {targets[-1]} + fsync after (s) "
        f"| of encode floor ({targets[0]}) | stored MB | same bytes as cellvol | peak anon. MiB |"
    )
    print("|---|---|" + "---|---|" * len(targets) + "---|---|---|---|---|")
    by_tool: dict[str, dict[str, Any]] = {}
    for row in report["writes"]:
        by_tool.setdefault(row["tool"], {})[row["target"]] = row
    for tool, per_target in by_tool.items():
        any_row = next(iter(per_target.values()))
        if "skipped" in any_row and "seconds" not in any_row:
            print(
                f"| {tool} | skipped: {any_row['skipped'][:120]} |" + " |" * (2 * len(targets) + 5)
            )
            continue
        cells: list[str] = []
        for target in targets:
            row = per_target[target]
            cells.append(f"{row['seconds']:.2f} | {mb / row['seconds']:.0f}")
        last = per_target[targets[-1]]
        synced = (
            "(fsyncs)" if last["fsync"] else f"{last['seconds'] + last['fsync_after_seconds']:.2f}"
        )
        first_row = per_target[targets[0]]
        share = mb / first_row["seconds"] / limits["zstd3_encode_crc32c"]
        print(
            f"| {tool} | {'yes' if last['fsync'] else 'no'} | {' | '.join(cells)} | {synced} "
            f"| {share:.0%} | {last.get('stored_bytes', 0) / 1e6:.1f} "
            f"| {'yes' if last.get('bytes_identical_to_cellvol') else 'no'} "
            f"| {max(r['peak_anon_mib'] for r in per_target.values()):.0f} |"
        )
    checks = [r.get("verified") for r in report["reads"] if "skipped" not in r] + [
        r.get("verified") for r in report["writes"] if "seconds" in r
    ]
    print(f"\nEvery output checked equal to the source: {all(checks)} ({len(checks)} checks)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CELLVOL_BENCH_DIR", "/tmp/cellvol-bench")),
        help="input, read store, and the on-disk write target",
    )
    parser.add_argument("--memory-dir", type=Path, default=Path("/dev/shm/cellvol-bench"))
    parser.add_argument("--shape", default="x".join(map(str, SHAPE)), help="z x y x, for trials")
    parser.add_argument("--planes", type=int, default=20, help="planes per orientation")
    parser.add_argument("--repeat", type=int, default=3, help="writes per tool and target")
    parser.add_argument("--read-tools", default=",".join(READ_TOOLS))
    parser.add_argument("--write-tools", default=",".join(WRITE_TOOLS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "codec-pipelines.json")
    parser.add_argument(
        "--report", type=Path, help="print the tables of an earlier run's JSON and measure nothing"
    )
    args = parser.parse_args()
    if args.report is not None:
        print_report(json.loads(args.report.read_text()))
        return
    shape = tuple(int(n) for n in args.shape.split("x"))
    if len(shape) != 3:
        raise SystemExit(f"--shape must be z x y x, got {args.shape!r}")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    source_path = make_input((shape[0], shape[1], shape[2]), args.data_dir)
    source = np.load(source_path, mmap_mode="r")
    store = build_read_store(source_path, args.data_dir)
    targets = {str(args.memory_dir): args.memory_dir, str(args.data_dir): args.data_dir / "writes"}
    started = time.perf_counter()
    # The limits are measured before and after the tools, and the better kept: on a shared
    # machine a single measurement sometimes caught a neighbour's load.
    limits: dict[str, Any] = codec_limits(source)
    limits["write_MBps"] = {name: write_rate(path) for name, path in targets.items()}
    print(json.dumps({"limits": limits}), flush=True)
    for path in store.rglob("*"):  # the page cache: every file of the store read once
        if path.is_file():
            path.read_bytes()
    reference = codecs_of(store / "0")
    reads = run_reads([t for t in args.read_tools.split(",") if t], store, source_path, args.planes)
    writes = run_writes(
        [t for t in args.write_tools.split(",") if t], targets, source_path, args.repeat, store
    )
    after = codec_limits(source)
    print(json.dumps({"limits_after": after}), flush=True)
    limits["before_and_after"] = {name: [limits[name], rate] for name, rate in after.items()}
    limits.update({name: max(limits[name], rate) for name, rate in after.items()})
    for name, path in targets.items():
        limits["write_MBps"][name] = max(limits["write_MBps"][name], write_rate(path))
    add_floors(limits)
    add_plane_floors(reads, shape, args.planes, limits["zstd3_decode_crc32c"])
    shutil.rmtree(args.memory_dir, ignore_errors=True)
    shutil.rmtree(args.data_dir / "writes", ignore_errors=True)
    report = {
        "case": (
            f"uint8 {'x'.join(map(str, shape))} synthetic tomogram "
            f"({source.nbytes / 2**20:.0f} MiB), 64³ chunks in 256³ shards, zstd-3, CRC32C"
        ),
        "input_shape": list(shape),
        "layout": reference,
        "planes_per_orientation": args.planes,
        "repeat": args.repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": versions(),
        "measured_on": time.strftime("%Y-%m-%d"),
        "run_seconds": round(time.perf_counter() - started, 1),
        "limits": limits,
        "reads": reads,
        "writes": writes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)
    print(f"\nraw results: {args.out}")


def versions() -> dict[str, str | None]:
    """Installed versions of the packages compared."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("cellvol", "zarr", "zarrs", "tensorstore", "numcodecs", "zstandard"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


if __name__ == "__main__":
    main()
