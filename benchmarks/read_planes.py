"""Plane latency and subvolume throughput: cellvol beside tensorstore and zarr-python.

    .venv/bin/pip install -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/read_planes.py                # local files, then S3 (moto)
    .venv/bin/python benchmarks/read_planes.py --cases s3     # one part; the other is kept

Input: the 1 GiB synthetic uint8 tomogram of compare_pyramid.py (512 x 1024 x 2048, written
once to ``--data-dir``). Stores built from it, each a 4-level 2x mean pyramid, zstd level 3:

- ``ts128``: tensorstore's pipeline of compare_pyramid.py, 128³ chunks, no shards;
- ``cv32``, ``cv64`` (cellvol's default) and ``cv128``: cellvol, 32³, 64³ and 128³ chunks in
  256³ shards, with cellvol's default compression (levels 2 and 3, at most 1/64 of level 0's
  voxels, stored uncompressed); ``cv48``: 48³ chunks in 240³ shards, the same otherwise;
- ``cv64z``: as ``cv64`` with zstd at every level (``uncompressed_fraction=0``).

Their build time, object count and stored bytes give the layout trade-off.

Reads, files in the page cache: random 512 x 512 planes (XY, XZ, YZ) at level 0 and level 2
(whose shape, 128 x 256 x 512, clips them), and random 256³ subvolumes of level 0. cellvol reads
with its chunk cache off (``ChunkCache(0)``: every plane decodes its chunks anew, as tensorstore
and zarr do here) and, for a viewer's pattern, with the default cache on planes that overlap
(``warm``: the plane beside the previous one).

S3: the stores are uploaded to a moto server on 127.0.0.1, in its own process as a real store
would be (see ``_moto_server.py``), which counts requests and response bytes. Each tool opens
the store and reads a first XY plane, then random planes. moto's time per request grows with
the object's size, so requests and bytes per plane are reported beside the time. The limit:
each plane's requests, as the server logged them, are sent again at once (32 connections,
unsigned, bodies read and dropped); that replay's time is the plane's transport floor on this
server, and "of floor" is the floor over the tool's time.
Results: ``benchmarks/results/read-planes.json``, and a JSON line per row on stdout as it runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _tools import IMPORTS, build_tensorstore
from compare_pyramid import case_config, make_input

from cellvol.synthetic import random_planes as planes_across

HERE = Path(__file__).resolve().parent
LEVELS = 4
# Store name: (chunk edge, shard edge, uncompressed_fraction; None for cellvol's default).
CELLVOL_LAYOUTS: dict[str, tuple[int, int, float | None]] = {
    "cv32": (32, 256, None),
    "cv48": (48, 240, None),
    "cv64": (64, 256, None),
    "cv64z": (64, 256, 0.0),
    "cv128": (128, 256, None),
}
KEY, SECRET, REGION = "bench", "bench", "us-east-1"
# Concurrent connections of the S3 transport floor's replay (see ``replay``).
REPLAY_CONNECTIONS = 32

Reader = Callable[[tuple[Any, ...]], Any]


def build_stores(source_path: Path, root: Path) -> dict[str, dict[str, Any]]:
    """Build every store once; return each one's path, build seconds and object count."""
    import cellvol

    for module in {*IMPORTS["cellvol"], *IMPORTS["tensorstore"]}:  # imports are not build time
        importlib.import_module(module)

    source = np.load(source_path, mmap_mode="r")
    stores: dict[str, dict[str, Any]] = {}
    builders: dict[str, Callable[[Path], None]] = {
        "ts128": lambda out: build_tensorstore(source, out, 128, case_config(1, "tomogram", False)),
    }

    def build_cellvol(out: Path, chunk: int, shard: int, uncompressed: float | None) -> None:
        cellvol.write_pyramid(
            source,
            out,
            1.0,
            chunks=(chunk,) * 3,
            shards=(shard,) * 3,
            n_levels=LEVELS,
            uncompressed_fraction=uncompressed,
            name="bench",
        )

    for name, (chunk, shard, uncompressed) in CELLVOL_LAYOUTS.items():
        builders[name] = functools.partial(
            build_cellvol, chunk=chunk, shard=shard, uncompressed=uncompressed
        )
    for name, build in builders.items():
        out = root / f"{name}.zarr"
        marker = out / "build.json"
        if not marker.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            started = time.perf_counter()
            build(out)
            seconds = time.perf_counter() - started
            objects = sum(1 for p in out.rglob("*") if p.is_file())
            marker.write_text(json.dumps({"build_s": round(seconds, 2), "objects": objects}))
        stored = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p != marker)
        stores[name] = {"path": out, "bytes": stored, **json.loads(marker.read_text())}
    return stores


def random_planes(shape: tuple[int, ...], count: int, seed: int) -> dict[str, list[tuple]]:
    """``count`` random 512 x 512 planes per orientation (clipped to the level)."""
    return {
        name: planes_across(shape, axis, count, seed)
        for name, axis in (("XY", 0), ("XZ", 1), ("YZ", 2))
    }


def neighbour_planes(shape: tuple[int, ...], count: int, seed: int) -> dict[str, list[tuple]]:
    """A viewer's pattern: one 512 x 512 window, stepping one voxel at a time through it."""
    planes = random_planes(shape, 1, seed)
    return {
        name: [
            tuple(((k + i) % shape[a]) if isinstance(k, int) else k for a, k in enumerate(key))
            for i in range(count)
        ]
        for name, (key,) in planes.items()
    }


def decode_limits(source_path: Path) -> dict[str, dict[str, float]]:
    """MB/s of voxels when zstd-3 chunks of each benchmarked edge are decompressed on every core.

    The chunks are cut from the benchmark volume itself; best of three tries, with each of
    the two decoders a Python reader has: numcodecs (a new context per chunk) and
    python-zstandard (a context per thread, reused). A read cannot beat decompressing the
    chunks it touches at the faster of the two rates: that is its floor (``"best"``). For
    uncompressed chunks (``"raw"``), the floor is checking their CRC32C, which every reader of
    a checksummed store must do.
    """
    import threading

    import google_crc32c
    import zstandard
    from numcodecs import Zstd

    local = threading.local()

    def reused_context(frame: bytes) -> bytes:
        if not hasattr(local, "context"):
            local.context = zstandard.ZstdDecompressor()
        return local.context.decompress(frame)  # type: ignore[no-any-return]

    decoders = {"numcodecs": Zstd().decode, "zstandard": reused_context}
    data = np.load(source_path, mmap_mode="r")
    codec = Zstd(level=3)
    rates: dict[str, dict[str, float]] = {name: {} for name in (*decoders, "best")}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for size in sorted({128, *(chunk for chunk, _, _ in CELLVOL_LAYOUTS.values())}):
            # Whole blocks only, from the same 128 x 512 x 1024 corner for every size.
            blocks = [
                np.ascontiguousarray(data[z : z + size, y : y + size, x : x + size])
                for z in range(0, 128 // size * size, size)
                for y in range(0, 512 // size * size, size)
                for x in range(0, 1024 // size * size, size)
            ]
            encoded = [codec.encode(block) for block in blocks]
            total = sum(block.nbytes for block in blocks)
            for name, decode in decoders.items():
                best = 0.0
                for _ in range(3):
                    started = time.perf_counter()
                    list(pool.map(decode, encoded))
                    best = max(best, total / (time.perf_counter() - started) / 1e6)
                rates[name][str(size)] = round(best, 1)
            rates["best"][str(size)] = max(rates[name][str(size)] for name in decoders)
        raw = [
            np.ascontiguousarray(data[z : z + 64, y : y + 64, x : x + 64]).tobytes()
            for z in range(0, 128, 64)
            for y in range(0, 512, 64)
            for x in range(0, 1024, 64)
        ]
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            list(pool.map(google_crc32c.value, raw))
            best = max(best, len(raw) * 64**3 / (time.perf_counter() - started) / 1e6)
        rates["best"]["raw"] = round(best, 1)
    return rates


def touched_bytes(key: tuple, shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Decoded bytes of the (uint8) chunks a read of ``key`` must decompress."""
    count = 1
    for part, n, c in zip(key, shape, chunks, strict=True):
        start, stop = (part, part + 1) if isinstance(part, int) else part.indices(n)[:2]
        count *= (stop - 1) // c - start // c + 1
    return count * int(np.prod(chunks))


def floor_ms(
    keys: list[tuple], shape: tuple[int, ...], chunks: tuple[int, ...], rate: float
) -> float:
    """The median read's floor: its chunks' bytes at the measured decompression rate."""
    return round(statistics.median(touched_bytes(k, shape, chunks) for k in keys) / rate / 1e3, 2)


def time_reads(read: Reader, keys: list[tuple]) -> list[float]:
    read(keys[0])  # the first read opens files and fills interpreter caches
    times = []
    for key in keys:
        started = time.perf_counter()
        read(key)
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1),
    }


# Readers ------------------------------------------------------------------------------------


def cellvol_reader(url: str, level: int, cached: bool, options: dict | None = None) -> Reader:
    import cellvol

    cache = cellvol.ChunkCache() if cached else cellvol.ChunkCache(0)
    chosen = cellvol.open(url, storage_options=options, cache=cache).level(level)
    return lambda key: chosen[key]


def level_path(store: str, level: int) -> str:
    """Both layouts keep level ``i`` as the array at ``store/i``."""
    return f"{store}/{level}"


def tensorstore_reader(kvstore: dict[str, Any]) -> Reader:
    import tensorstore as ts

    array = ts.open({"driver": "zarr3", "kvstore": kvstore, "open": True}).result()
    return lambda key: array[key].read().result()


def zarr_reader(url: str, options: dict | None = None) -> Reader:
    import zarr

    array = zarr.open_array(url, mode="r", storage_options=options)
    return lambda key: array[key]


def local_readers(
    stores: dict[str, dict[str, Any]], level: int
) -> Iterator[tuple[str, str, Reader]]:
    for name, info in stores.items():
        base = str(info["path"])
        path = level_path(base, level)
        yield name, "tensorstore", tensorstore_reader({"driver": "file", "path": path})
        yield name, "zarr-python", zarr_reader(path)
        opened = base if name.startswith("cv") else path
        cv_level = level if name.startswith("cv") else 0
        yield name, "cellvol", cellvol_reader(opened, cv_level, cached=False)
        yield name, "cellvol (cache, neighbours)", cellvol_reader(opened, cv_level, cached=True)


def run_local(
    stores: dict[str, dict[str, Any]], count: int, limits: dict[str, float]
) -> list[dict[str, Any]]:
    """Every local reader on levels 0 and 2; each figure beside its decompression floor."""
    import zarr

    from cellvol._codec._layout import chunk_layout

    rows: list[dict[str, Any]] = []
    for level in (0, 2):
        for store, tool, read in local_readers(stores, level):
            array = zarr.open_array(level_path(str(stores[store]["path"]), level))
            shape, chunks = tuple(array.shape), tuple(array.chunks)
            layout = chunk_layout(array)
            compressed = layout is None or bool(layout.decoders)
            rate = limits[str(chunks[0])] if compressed else limits["raw"]
            planes = (
                neighbour_planes(shape, count, seed=level)
                if "neighbours" in tool
                else random_planes(shape, count, seed=level)
            )
            row: dict[str, Any] = {"store": store, "tool": tool, "level": level}
            for orientation, keys in planes.items():
                row[orientation] = summary(time_reads(read, keys))
                if "neighbours" not in tool:
                    floor = floor_ms(keys, shape, chunks, rate)
                    row[orientation]["floor_ms"] = floor
                    row[orientation]["of_limit"] = round(floor / row[orientation]["median_ms"], 3)
            if level == 0 and "neighbours" not in tool:
                row["subvolume_MBps"], row["subvolume_of_limit"] = subvolume_rate(
                    read, shape, chunks, rate
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def subvolume_rate(
    read: Reader, shape: tuple[int, ...], chunks: tuple[int, ...], rate: float, count: int = 8
) -> tuple[float, float]:
    """MB/s of random 256³ subvolumes, and the fraction it is of their decompression floor."""
    rng = np.random.default_rng(7)
    keys = []
    for _ in range(count):
        start = [int(rng.integers(0, n - 256 + 1)) for n in shape]
        keys.append(tuple(slice(s, s + 256) for s in start))
    seconds = sum(time_reads(read, keys))
    floor = sum(touched_bytes(k, shape, chunks) for k in keys) / rate / 1e6
    return round(count * 256**3 / seconds / 1e6, 1), round(floor / seconds, 3)


# S3 ----------------------------------------------------------------------------------------


Request = tuple[str, str, str | None]
"""An HTTP request as the server saw it: method, path with query, Range header."""


class MotoServer:
    """benchmarks/_moto_server.py in its own process, and its request counter."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_moto_server.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.process.kill()
            raise RuntimeError(f"the moto server did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"

    def _control(self, command: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(f"{self.endpoint}/_bench/{command}") as reply:
            return json.loads(reply.read())

    def reset(self) -> tuple[int, int]:
        """Requests and response bytes since the last reset."""
        counts = self._control("reset")
        return counts["requests"], counts["bytes"]

    def start_log(self) -> None:
        self._control("start-log")

    def take_log(self) -> list[Request]:
        return [tuple(entry) for entry in self._control("take-log")]  # type: ignore[misc]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def replay(endpoint: str, requests: list[Request], http: Any, pool: ThreadPoolExecutor) -> float:
    """Seconds to send ``requests`` again, all at once, unsigned, and read every reply's body.

    This is the plane's transport floor on this server: the same requests and bytes a tool
    needed, without its signing, response parsing or decoding. (The bucket is public-read, so
    moto answers unsigned requests; it does not check signatures either way.)
    """

    def send(request: Request) -> None:
        method, path, byte_range = request
        headers = {"Range": byte_range} if byte_range else {}
        reply = http.request(method, endpoint + path, headers=headers, preload_content=True)
        if reply.status >= 400:
            raise RuntimeError(f"replay of {method} {path} ({byte_range}): HTTP {reply.status}")

    started = time.perf_counter()
    list(pool.map(send, requests))
    return time.perf_counter() - started


def upload(endpoint: str, bucket: str, stores: dict[str, dict[str, Any]], names: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    client.create_bucket(Bucket=bucket, ACL="public-read")  # for the unsigned replay
    files = [
        (path, f"{name}.zarr/{path.relative_to(stores[name]['path'])}")
        for name in names
        for path in stores[name]["path"].rglob("*")
        if path.is_file()
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda f: client.upload_file(str(f[0]), bucket, f[1]), files))


def s3_reader(tool: str, endpoint: str, bucket: str, store: str, options: dict) -> Reader:
    """Open level 0 of ``store`` in ``bucket`` with ``tool``."""
    base = f"s3://{bucket}/{store}.zarr"
    if tool == "tensorstore":
        kvstore = {
            "driver": "s3",
            "bucket": bucket,
            "path": f"{store}.zarr/0/",
            "endpoint": endpoint,
            "aws_region": REGION,
        }
        return tensorstore_reader(kvstore)
    if tool == "zarr-python":
        return zarr_reader(f"{base}/0", options)
    return cellvol_reader(base if store.startswith("cv") else f"{base}/0", 0, False, options)


def run_s3(stores: dict[str, dict[str, Any]], count: int) -> list[dict[str, Any]]:
    counter = MotoServer()
    try:
        return _run_s3(stores, count, counter)
    finally:
        counter.stop()


def _run_s3(
    stores: dict[str, dict[str, Any]], count: int, counter: MotoServer
) -> list[dict[str, Any]]:
    endpoint = counter.endpoint
    os.environ.update(
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
    )
    bucket = "bench"
    names = ["ts128", "cv64"]
    upload(endpoint, bucket, stores, names)
    options = {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}
    import urllib3

    http = urllib3.PoolManager(maxsize=REPLAY_CONNECTIONS)
    pool = ThreadPoolExecutor(REPLAY_CONNECTIONS)
    rows = []
    for store in names:
        base = f"s3://{bucket}/{store}.zarr"
        import zarr

        shape = tuple(zarr.open_array(f"{base}/0", mode="r", storage_options=options).shape)
        planes = random_planes(shape, count, seed=11)
        for tool in ("tensorstore", "zarr-python", "cellvol"):
            counter.reset()
            started = time.perf_counter()
            read = s3_reader(tool, endpoint, bucket, store, options)
            read(planes["XY"][0])
            first = time.perf_counter() - started
            requests, nbytes = counter.reset()
            row: dict[str, Any] = {
                "store": store,
                "tool": tool,
                "open_and_first_XY_ms": round(1000 * first, 1),
                "first_requests": requests,
                "first_MB": round(nbytes / 1e6, 2),
            }
            for orientation, keys in planes.items():
                counter.reset()
                times, logs = [], []
                for key in keys:
                    counter.start_log()
                    t = time.perf_counter()
                    read(key)
                    times.append(time.perf_counter() - t)
                    logs.append(counter.take_log())
                requests, nbytes = counter.reset()
                floors = [replay(endpoint, log, http, pool) for log in logs]
                counter.reset()  # the replays' own traffic is not the tool's
                row[orientation] = {
                    **summary(times),
                    "requests": round(requests / len(keys), 1),
                    "MB": round(nbytes / len(keys) / 1e6, 2),
                    "transport_floor_ms": round(1000 * statistics.median(floors), 1),
                    "of_floor": round(statistics.median(floors) / statistics.median(times), 3),
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--planes", type=int, default=20, help="planes per orientation")
    parser.add_argument(
        "--cases",
        default="local,s3",
        help="local, s3 or both; a part not run keeps its previous results in the JSON",
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    source = make_input(1, args.data_dir)
    stores = build_stores(source, args.data_dir / "read-stores")
    for info in stores.values():  # the page cache: every file read once
        for path in info["path"].rglob("*"):
            if path.is_file():
                path.read_bytes()
    out = HERE / "results" / "read-planes.json"
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    record["input"] = str(source)
    record["python"] = sys.version.split()[0]
    record["cpus"] = os.cpu_count()
    record["stores"] = {
        name: {"build_s": info["build_s"], "objects": info["objects"], "bytes": info["bytes"]}
        for name, info in stores.items()
    }
    cases = {case.strip() for case in args.cases.split(",")}
    measured = record.setdefault("measured_on", {})
    if "local" in cases:
        record["decode_limits_MBps"] = decode_limits(source)
        print(json.dumps({"decode_limits_MBps": record["decode_limits_MBps"]}), flush=True)
        record["local"] = run_local(stores, args.planes, record["decode_limits_MBps"]["best"])
        measured["local"] = time.strftime("%Y-%m-%d")
    if "s3" in cases:
        record["s3"] = run_s3(stores, max(5, args.planes // 2))
        measured["s3"] = time.strftime("%Y-%m-%d")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
