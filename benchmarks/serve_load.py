"""Load on ``cellvol serve``: concurrent clients on loopback fetching raw keys and tiles.

    .venv/bin/python benchmarks/serve_load.py                  # 32 clients, 60 s per case
    .venv/bin/python benchmarks/serve_load.py --seconds 10     # a quicker look

The server runs as its own process (``cellvol serve IMAGE --port 0``); the clients are one
asyncio process with aiohttp, so both share this machine's 2 cores. The image is the 1 GiB
benchmark volume written by cellvol (64³ chunks in 256³ shards, 4 levels), made once in
``--data-dir`` (or ``--image``).

Cases, each for ``--seconds`` with ``--clients`` clients looping without pause:

- ``raw keys``: what neuroglancer does: half the requests read a random level-0 shard's
  index (a suffix range: 16 bytes per chunk plus 4), half a random 256 KiB byte range of a
  random shard;
- ``tiles``: random 256 x 256 PNG tiles (level 0-2, any orientation and position), none
  repeated, so none answered from a cache.

Reported per case: requests per second, p50 / p99 latency and errors (non-2xx replies and
failed connections). Results go to ``benchmarks/results/serve-load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def prepare_image(data_dir: Path) -> Path:
    """The 1 GiB benchmark pyramid, built once (as read_planes.py's cv64 store)."""
    image = data_dir / "serve-load.ome.zarr"
    if (image / "zarr.json").exists():
        return image
    import numpy as np
    from compare_pyramid import make_input

    import cellvol

    source = np.load(make_input(1, data_dir), mmap_mode="r")
    cellvol.write_pyramid(source, image, (4.0, 4.0, 4.0), n_levels=4, name="bench")
    return image


def start_server(image: Path) -> tuple[subprocess.Popen[str], str]:
    command = Path(sys.executable).with_name("cellvol")
    process = subprocess.Popen(
        [str(command), "serve", f"bench={image}", "--port", "0", "--max-concurrency", "32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("catalog "):
            return process, line.split()[1].removesuffix("catalog")
    raise RuntimeError("the server did not start")


def raw_key_requests(catalog: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, str]]:
    level = catalog["levels"][0]
    grid = [-(-n // s) for n, s in zip(level["shape"], level["shards"], strict=True)]
    shard = "/".join(str(rng.randrange(n)) for n in grid)
    key = f"data/bench/0/c/{shard}"
    if rng.random() < 0.5:
        inner = 1
        for shard_side, chunk_side in zip(level["shards"], level["chunks"], strict=True):
            inner *= shard_side // chunk_side
        return key, {"Range": f"bytes=-{16 * inner + 4}"}  # the index and its checksum
    start = rng.randrange(0, 8 * 2**20)
    return key, {"Range": f"bytes={start}-{start + 256 * 1024 - 1}"}


def tile_requests(catalog: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, str]]:
    index = rng.randrange(3)
    level = catalog["levels"][index]
    axis = rng.randrange(3)
    rows, cols = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]
    shape = level["shape"]
    plane = rng.randrange(shape[axis])
    row = rng.randrange(-(-shape[rows] // 256))
    col = rng.randrange(-(-shape[cols] // 256))
    return f"tiles/bench/{index}/{'zyx'[axis]}/{plane}/{row}/{col}.png", {}


async def load(
    base: str, make: Any, catalog: dict[str, Any], clients: int, seconds: float
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                path, headers = make(catalog, rng)
                started = time.perf_counter()
                try:
                    async with session.get(base + path, headers=headers) as reply:
                        await reply.read()
                        if reply.status >= 400:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--image", type=Path, help="serve this image instead")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    image = args.image or prepare_image(args.data_dir)
    process, base = start_server(image)
    try:
        import urllib.request

        with urllib.request.urlopen(base + "catalog") as reply:
            catalog = json.loads(reply.read())["volumes"][0]
        results = {}
        for name, make in (("raw keys", raw_key_requests), ("tiles", tile_requests)):
            results[name] = asyncio.run(load(base, make, catalog, args.clients, args.seconds))
            print(json.dumps({name: results[name]}), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
    record = {
        "image": str(image),
        "clients": args.clients,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "results": results,
    }
    out = HERE / "results" / "serve-load.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n| case | requests/s | p50 (ms) | p99 (ms) | errors |\n|---|---:|---:|---:|---:|")
    for name, row in results.items():
        print(
            f"| {name} | {row['requests_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['errors']} |"
        )


if __name__ == "__main__":
    main()
