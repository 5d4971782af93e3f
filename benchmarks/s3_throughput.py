"""S3 throughput: the pyramid write and plane reads beside the other tools, and the server's limit.

    .venv/bin/pip install -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/s3_throughput.py                 # the 1 GiB tomogram
    .venv/bin/python benchmarks/s3_throughput.py --size-gib 0.25 --tools cellvol,tensorstore
    .venv/bin/python benchmarks/s3_throughput.py --size-gib 16 --tools cellvol --writes-only

A moto server (``_moto_server.py``) runs on 127.0.0.1 in a process of its own, as a real store
would. In one run, on the seed-0 synthetic uint8 tomogram (``--size-gib``):

- **writes**: the 4-level 2x mean pyramid (zstd 3, 128³ chunks; cellvol puts them in its 256³
  shards) by each tool in a fresh process (``_tools.py``, the jobs of compare_pyramid.py) into
  a bucket of its own: seconds, the tool's CPU seconds, moto's CPU seconds, peak memory, and
  the requests moto answered by method, per object stored;
- **the server's limit**: every object cellvol's write stored, PUT again and then GET, as many
  at once as the client takes, by three clients: obstore (Rust), s3fs (cellvol's transport,
  one event loop) and plain unsigned HTTP on 32 threads; MB/s;
- **multipart**: ``--big-objects`` objects of 64 MiB through cellvol's store, whole (one PUT
  each, as below its threshold) and in parallel parts (cellvol's way from 32 MiB up);
- **reads**: random 512² planes (XY, XZ, YZ) and 128³ subvolumes of level 0, from cellvol's
  and tensorstore's stores, by tensorstore, zarr-python over s3fs and over obstore
  (``zarr.storage.ObjectStore``), and cellvol; no cache anywhere; each reader's values are
  checked equal to the input before it is timed; median and p90 ms;
- **requests and bytes**, by method, per shard written and per plane read: the same write and
  reads once more through the fault proxy (``_fault_proxy.py``) at 0% faults, which counts them
  (``other_requests``: the HEADs and listings of all ``--counted`` planes together);
- **moto's memory** (its peak RSS). moto keeps the objects' bytes in files under
  ``--data-dir`` (``moto-objects``, deleted as it exits), not in memory: a 16 GiB write fits.

``--writes-only`` stops after the writes (and moto's memory): everything after them reads or
stores every object again, which for 16 GiB takes long and, for the server's limit, holds
every object in this process's memory.

Wall-clock times are noisy on a shared machine: CPU seconds come with them. Results:
``results/s3-throughput.json`` and Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _inputs import write_synthetic_npy
from _measure import measure
from compare_pyramid import SHAPES
from read_planes import REGION, Reader, cellvol_reader, random_planes, summary, tensorstore_reader
from s3_faults import Process, listing

HERE = Path(__file__).resolve().parent
KEY = SECRET = "bench"
TOOLS = ("cellvol", "tensorstore", "ngff-zarr", "ome-zarr")
CHUNK = 128
LEVELS = 4
# Concurrent requests of the bulk clients (the plain HTTP one: its threads).
BULK_CONCURRENCY = 32
BIG_OBJECT = 64 * 2**20


def shape_of(size_gib: float) -> tuple[int, int, int]:
    """compare_pyramid's shape for 1, 4 and 16 GiB; else 1 GiB's, longer or shorter in z."""
    if size_gib in SHAPES:
        return SHAPES[int(size_gib)]
    return (max(CHUNK, round(512 * size_gib)), 1024, 2048)


def moto_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moto_memory_mib(pid: int, spill: Path) -> dict[str, float]:
    """moto's resident memory now and at its peak (MiB), and its objects' files in ``spill``."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    # Each stored object (and part) is a deleted temporary file moto holds open.
    files = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            files += os.readlink(fd).startswith(str(spill))
    return {"rss_mib": values["VmRSS"], "peak_rss_mib": values["VmHWM"], "files_on_disk": files}


# Writes --------------------------------------------------------------------------------------


def write_rows(
    client: Any, moto: Process, source: Path, shape: tuple[int, ...], tools: list[str]
) -> list[dict[str, Any]]:
    """Each tool's pyramid write into a bucket of its own, in a fresh process."""
    rows: list[dict[str, Any]] = []
    for tool in tools:
        bucket = f"write-{tool}"
        client.create_bucket(Bucket=bucket)
        command = [sys.executable, str(HERE / "_tools.py"), tool, str(source)]
        command += [f"s3://{bucket}/image.zarr", str(LEVELS), str(CHUNK)]
        cpu = moto_cpu_seconds(moto.process.pid)
        moto.get("/_bench/reset")
        result = measure(command)
        moto_cpu = moto_cpu_seconds(moto.process.pid) - cpu
        requests = moto.get("/_bench/reset")["by_method"]
        if result.returncode != 0:
            rows.append({"tool": tool, "error": result.output[-600:]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            continue
        # The JSON line is the last; warnings and progress may come before it (and after).
        lines = [x for x in result.output.splitlines() if x.startswith('{"tool"')]
        if not lines:
            rows.append({"tool": tool, "error": result.output[-600:]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            continue
        reported = json.loads(lines[-1])
        objects = listing(client, bucket)
        rows.append(
            {
                "tool": tool,
                "seconds": round(reported["build_seconds"], 2),
                "MBps": round(np.prod(shape) / reported["build_seconds"] / 1e6, 1),
                "cpu_seconds": round(reported["cpu_seconds"], 2),
                "moto_cpu_seconds": round(moto_cpu, 2),
                "peak_anon_mib": round(result.peak_anon_mib),
                "objects": len(objects),
                "stored_MB": round(sum(size for size, _ in objects.values()) / 1e6, 1),
                "requests_per_object": {
                    method: round(count / len(objects), 2)
                    for method, count in sorted(requests.items())
                },
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# The server's limit: bulk PUT and GET -------------------------------------------------------


def bulk_rows(endpoint: str, bucket: str, blobs: dict[str, bytes]) -> list[dict[str, Any]]:
    """PUT every blob, then GET it, with each client at its concurrency: MB/s."""
    total = sum(len(b) for b in blobs.values())
    rows = []
    for name, put, get in (
        ("obstore", obstore_put, obstore_get),
        ("s3fs", s3fs_put, s3fs_get),
        ("plain HTTP, 32 threads", http_put, http_get),
    ):
        prefix = f"bulk-{name.split()[0]}"
        keys = {f"{prefix}/{key}": data for key, data in blobs.items()}
        started = time.perf_counter()
        put(endpoint, bucket, keys)
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        got = get(endpoint, bucket, list(keys))
        get_s = time.perf_counter() - started
        if got != total:
            raise RuntimeError(f"{name}: {got} bytes read back of the {total} stored")
        rows.append(
            {
                "client": name,
                "objects": len(keys),
                "MB": round(total / 1e6, 1),
                "put_MBps": round(total / put_s / 1e6, 1),
                "get_MBps": round(total / get_s / 1e6, 1),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def obstore_store(endpoint: str, bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=endpoint,
        access_key_id=KEY,
        secret_access_key=SECRET,
        region=REGION,
        client_options={"allow_http": True},
    )


def obstore_put(endpoint: str, bucket: str, blobs: dict[str, bytes]) -> None:
    import obstore

    store = obstore_store(endpoint, bucket)

    async def run() -> None:
        await asyncio.gather(*(obstore.put_async(store, k, v) for k, v in blobs.items()))

    asyncio.run(run())


def obstore_get(endpoint: str, bucket: str, keys: list[str]) -> int:
    import obstore

    store = obstore_store(endpoint, bucket)

    async def run() -> int:
        async def one(key: str) -> int:
            return len(await (await obstore.get_async(store, key)).bytes_async())

        return sum(await asyncio.gather(*(one(k) for k in keys)))

    return asyncio.run(run())


def s3fs_put(endpoint: str, bucket: str, blobs: dict[str, bytes]) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from cellvol._store import open_store

    store = open_store(f"s3://{bucket}", mode="a", storage_options=s3_options(endpoint))

    async def run() -> None:
        wrap = default_buffer_prototype().buffer.from_bytes
        await asyncio.gather(*(store.set(k, wrap(v)) for k, v in blobs.items()))

    sync(run())


def s3fs_get(endpoint: str, bucket: str, keys: list[str]) -> int:
    from cellvol._store import open_store, read_objects

    store = open_store(f"s3://{bucket}", mode="r", storage_options=s3_options(endpoint))
    return sum(len(b or b"") for b in read_objects(store, keys))


def http_put(endpoint: str, bucket: str, blobs: dict[str, bytes]) -> None:
    import urllib3

    http = urllib3.PoolManager(maxsize=BULK_CONCURRENCY)

    def send(item: tuple[str, bytes]) -> None:
        reply = http.request("PUT", f"{endpoint}/{bucket}/{item[0]}", body=item[1])
        if reply.status >= 400:
            raise RuntimeError(f"unsigned PUT of {item[0]}: HTTP {reply.status}")

    with ThreadPoolExecutor(BULK_CONCURRENCY) as pool:
        list(pool.map(send, blobs.items()))


def http_get(endpoint: str, bucket: str, keys: list[str]) -> int:
    import urllib3

    http = urllib3.PoolManager(maxsize=BULK_CONCURRENCY)

    def fetch(key: str) -> int:
        reply = http.request("GET", f"{endpoint}/{bucket}/{key}")
        if reply.status >= 400:
            raise RuntimeError(f"unsigned GET of {key}: HTTP {reply.status}")
        return len(reply.data)

    with ThreadPoolExecutor(BULK_CONCURRENCY) as pool:
        return sum(pool.map(fetch, keys))


def multipart_rows(endpoint: str, bucket: str, count: int) -> list[dict[str, Any]]:
    """``count`` objects of 64 MiB through cellvol's store: whole, then in parallel parts."""
    from zarr.core.sync import sync

    from cellvol._store import _multipart, open_store
    from cellvol._store._objects import write_bytes

    store = open_store(f"s3://{bucket}", mode="a", storage_options=s3_options(endpoint))
    blob = np.random.default_rng(0).integers(0, 256, BIG_OBJECT, dtype=np.uint8).tobytes()
    rows = []
    threshold = _multipart.MULTIPART_THRESHOLD
    for way, limit in (("one PUT", BIG_OBJECT + 1), ("parallel parts", threshold)):
        _multipart.MULTIPART_THRESHOLD = limit  # type: ignore[misc]
        try:
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(count):
                write_bytes(store, f"big/{way}/{i}", blob)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            _multipart.MULTIPART_THRESHOLD = threshold  # type: ignore[misc]
        fs: Any = store.fs  # type: ignore[attr-defined]
        etag = sync(fs._call_s3("head_object", Bucket=bucket, Key=f"big/{way}/0"))["ETag"]
        rows.append(
            {
                "way": way,
                "objects": count,
                "MBps": round(count * BIG_OBJECT / seconds / 1e6, 1),
                "cpu_seconds": round(cpu, 2),
                "multipart_etag": "-" in etag,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# Reads ---------------------------------------------------------------------------------------


def s3_options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}


def readers(endpoint: str, bucket: str, cellvol_layout: bool) -> dict[str, Reader]:
    """Level 0 of the pyramid in ``bucket``, opened by each reader."""
    import zarr
    from zarr.storage import ObjectStore

    level = f"image.zarr/{0}"
    kvstore = {
        "driver": "s3",
        "bucket": bucket,
        "path": f"{level}/",
        "endpoint": endpoint,
        "aws_region": REGION,
    }
    options = s3_options(endpoint)
    over_s3fs = zarr.open_array(f"s3://{bucket}/{level}", mode="r", storage_options=options)
    over_obstore = zarr.open_array(
        ObjectStore(obstore_store(endpoint, bucket), read_only=True), path=level, mode="r"
    )
    url = f"s3://{bucket}/image.zarr"
    return {
        "tensorstore": tensorstore_reader(kvstore),
        "zarr-python (s3fs)": lambda key: over_s3fs[key],
        "zarr-python (obstore)": lambda key: over_obstore[key],
        "cellvol": cellvol_reader(url if cellvol_layout else f"{url}/0", 0, False, options),
    }


def subvolumes(shape: tuple[int, ...], count: int, seed: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(seed)
    starts = [[int(rng.integers(0, n - 128 + 1)) for n in shape] for _ in range(count)]
    return [tuple(slice(s, s + 128) for s in start) for start in starts]


def read_rows(
    endpoint: str, source: np.ndarray, stores: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """Median and p90 ms of planes and subvolumes, per store and reader, values checked."""
    planes = random_planes(source.shape, count, seed=11)
    cubes = subvolumes(source.shape, count, seed=12)
    rows = []
    for store, bucket in stores.items():
        for tool, read in readers(endpoint, bucket, store == "cellvol").items():
            for key in (planes["XY"][0], planes["YZ"][0], cubes[0]):
                if not np.array_equal(np.asarray(read(key)), source[key]):
                    raise RuntimeError(f"{tool} read other values than the input at {key}")
            row: dict[str, Any] = {"store": store, "tool": tool}
            for name, keys in (*planes.items(), ("128³", cubes)):
                times = []
                for key in keys:
                    started = time.perf_counter()
                    read(key)
                    times.append(time.perf_counter() - started)
                row[name] = summary(times)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


# Requests and bytes, counted by the proxy ---------------------------------------------------


def traffic_rows(
    proxy: Process, client: Any, source: Path, shape: tuple[int, ...], count: int
) -> dict[str, Any]:
    """cellvol's write and every reader's planes through the proxy: requests and bytes."""
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    client.create_bucket(Bucket="counted-cellvol")
    proxy.get("/_faults/traffic")
    command = [sys.executable, str(HERE / "_tools.py"), "cellvol", str(source)]
    command += ["s3://counted-cellvol/image.zarr", str(LEVELS), str(CHUNK)]
    subprocess.run(command, check=True, capture_output=True)
    traffic = proxy.get("/_faults/traffic")
    shards = sum(1 for key in listing(client, "counted-cellvol") if "/c/" in key)
    per_shard = {
        k: round(v / shards, 2) for k, v in traffic.items() if k.startswith(("PUT", "POST"))
    }
    result: dict[str, Any] = {"write": {"shards": shards, "per_shard": per_shard, **traffic}}
    volume = np.load(source, mmap_mode="r")
    planes = random_planes(volume.shape, count, seed=11)
    for store, bucket in (("cellvol", "counted-cellvol"), ("tensorstore", "write-tensorstore")):
        for tool, read in readers(proxy.url, bucket, store == "cellvol").items():
            read(planes["XY"][0])  # opening: metadata and shard indexes, not counted
            for orientation, keys in planes.items():
                proxy.get("/_faults/traffic")
                for key in keys:
                    read(key)
                seen = proxy.get("/_faults/traffic")
                result[f"{store} store, {tool}, {orientation}"] = {
                    "requests": round(seen.get("GET requests", 0) / len(keys), 1),
                    "MB": round(seen.get("GET bytes down", 0) / len(keys) / 1e6, 2),
                    "other_requests": sum(
                        v for k, v in seen.items() if k.endswith("requests") and "GET" not in k
                    ),
                }
    os.environ["AWS_ENDPOINT_URL"] = os.environ["CELLVOL_BENCH_MOTO"]
    return result


# The run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    shape = shape_of(args.size_gib)
    source = write_synthetic_npy(args.data_dir / f"s3tp_{'x'.join(map(str, shape))}.npy", shape)
    spill = args.data_dir / "moto-objects"
    moto = Process(str(HERE / "_moto_server.py"), str(spill))
    proxy = Process(str(HERE / "_fault_proxy.py"), moto.url)
    os.environ.update(
        AWS_ENDPOINT_URL=moto.url,
        CELLVOL_BENCH_MOTO=moto.url,
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    client = boto3.client("s3", endpoint_url=moto.url, region_name=REGION)
    result: dict[str, Any] = {"benchmark": "s3-throughput", "shape": list(shape)}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        tools = args.tools.split(",")
        result["writes"] = write_rows(client, moto, source, shape, tools)
        result["moto_after_writes"] = moto_memory_mib(moto.process.pid, spill)
        if args.writes_only:
            return result
        written = listing(client, "write-cellvol")
        blobs = {
            key: (client.get_object(Bucket="write-cellvol", Key=key)["Body"].read())
            for key in written
        }
        client.create_bucket(Bucket="bulk", ACL="public-read-write")  # plain HTTP is unsigned
        result["bulk"] = bulk_rows(moto.url, "bulk", blobs)
        del blobs
        result["multipart"] = multipart_rows(moto.url, "bulk", args.big_objects)
        volume = np.load(source, mmap_mode="r")
        stores = {t: f"write-{t}" for t in ("cellvol", "tensorstore") if t in tools}
        result["reads"] = read_rows(moto.url, volume, stores, args.reads)
        if {"cellvol", "tensorstore"} <= set(tools):
            result["traffic"] = traffic_rows(proxy, client, source, shape, args.counted)
        result["moto_at_end"] = moto_memory_mib(moto.process.pid, spill)
    finally:
        proxy.stop()
        moto.stop()
    return result


def tables(result: dict[str, Any]) -> str:
    lines = [
        "| tool | write (s) | MB/s | CPU (s) | moto CPU (s) | peak MiB | objects | MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["writes"]:
        if "error" in r:
            errors = [x for x in r["error"].splitlines() if "Error" in x] or ["failed"]
            lines.append(f"| {r['tool']} | {errors[-1][:120]} |  |  |  |  |  |  |")
            continue
        lines.append(
            f"| {r['tool']} | {r['seconds']} | {r['MBps']} | {r['cpu_seconds']} | "
            f"{r['moto_cpu_seconds']} | {r['peak_anon_mib']} | {r['objects']} | {r['stored_MB']} |"
        )
    lines += ["", "| tool | requests per object stored, by method |", "|---|---|"]
    for r in result["writes"]:
        if "requests_per_object" in r:
            counts = ", ".join(f"{k} {v}" for k, v in r["requests_per_object"].items())
            lines.append(f"| {r['tool']} | {counts} |")
    lines += ["", f"moto after the writes: {result['moto_after_writes']}"]
    if "bulk" not in result:
        return "\n".join(lines)
    lines += ["", "| client | PUT MB/s | GET MB/s |", "|---|---|---|"]
    lines += [f"| {r['client']} | {r['put_MBps']} | {r['get_MBps']} |" for r in result["bulk"]]
    lines += ["", "| 64 MiB objects | MB/s | CPU (s) |", "|---|---|---|"]
    lines += [f"| {r['way']} | {r['MBps']} | {r['cpu_seconds']} |" for r in result["multipart"]]
    lines += ["", "| store | reader | XY | XZ | YZ | 128³ |", "|---|---|---|---|---|---|"]
    for r in result["reads"]:
        cells = [f"{r[k]['median_ms']} / {r[k]['p90_ms']}" for k in ("XY", "XZ", "YZ", "128³")]
        lines.append(f"| {r['store']} | {r['tool']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--reads", type=int, default=20, help="per orientation and reader")
    parser.add_argument("--counted", type=int, default=5, help="planes counted per reader")
    parser.add_argument("--big-objects", type=int, default=8)
    parser.add_argument(
        "--writes-only", action="store_true", help="only the writes: no bulk, multipart or reads"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("/tmp/cellvol-bench"),
        help="the input volume, and moto's objects: a directory on disk, not in memory",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "s3-throughput.json")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    result = run(args)
    result["size_gib"] = args.size_gib
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(tables(result))


if __name__ == "__main__":
    main()
