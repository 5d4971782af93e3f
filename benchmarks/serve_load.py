"""Load on ``cellvol serve``, next to a peer and to limits measured in the same run.

    .venv/bin/python benchmarks/serve_load.py                  # 32 clients, 60 s per case
    .venv/bin/python benchmarks/serve_load.py --seconds 10     # a quicker look
    .venv/bin/python benchmarks/serve_load.py --cases tiles tiles-limit

Every server runs as its own process on 127.0.0.1 (port 0), one at a time; the clients are one
asyncio process with aiohttp, so server and clients share this machine's 2 cores. The image is
the 1 GiB benchmark volume written by cellvol (64³ chunks in 256³ shards, 4 levels), made once
in ``--data-dir`` (or ``--image``). Servers built here use uvicorn with the settings
``cellvol serve`` uses (one process, one worker, the same loop and HTTP implementation), and
let uvicorn bind the port itself, which turns Nagle's algorithm off as cellvol's runner does.

Cases (``--cases``), each for ``--seconds``; the HTTP ones with ``--clients`` clients looping
without pause, client ``i`` drawing its requests from ``random.Random(i)`` whatever the server,
so every server is asked the same sequence of requests:

- ``raw-keys``: what neuroglancer does, from ``cellvol serve`` (``/data/bench/0/c/...``):
  half the requests read a random level-0 shard's index (a suffix range: 16 bytes per chunk
  plus 4), half a random 256 KiB byte range of a random shard;
- ``raw-keys-peer``: the same requests to a generic static file server with Range support,
  starlette's ``StaticFiles`` under uvicorn, serving the image directory at its root
  (``/0/c/...``);
- ``raw-keys-limit``: the same requests to a trivial uvicorn + starlette app that answers each
  with ``206`` and as many bytes, from memory, as the range asks for. This is the ceiling of
  the HTTP stack (uvicorn, starlette's routing, aiohttp's clients, loopback) for this exact
  load: the same requests, the same body sizes on the wire, but no file system, no key
  checks, no validators. A fixed tiny body would overstate the ceiling (it leaves out sending
  the 256 KiB ranges), a fixed 256 KiB body understate it (half the real replies are 1 KiB);
- ``http-16b``: the same requests answered with 16 bytes each; for context only, the stack's
  bare request rate (not used as a limit, for the reason above);
- ``tiles``: random 256 x 256 PNG tiles from ``cellvol serve`` (level 0-2, any orientation and
  position). Clients send no validators, so every request is read and rendered; a tile drawn
  again (frequent at level 2, which has 1,280 distinct tiles) finds its chunks in the chunk
  cache, as it would for a viewer. No server in the Python ecosystem renders cross-section
  tiles from OME-Zarr, so this case has no peer;
- ``tiles-limit``: the same work without HTTP, in a separate process: the tiles the clients
  draw (their generators taken in turn), read and rendered by cellvol's own code as the
  server does it (``Served.open``, the app's ``_box``, ``level[box]`` which is what the
  server's ``read_async`` runs on a local store, ``render`` and ``encode`` as PNG), with the
  default chunk cache the server also uses, on one thread per core, for ``--seconds``
  (``--render-threads``; more threads were measured not to render faster: the work is CPU
  bound). ETag hashing and the HTTP exchange are all the server does besides.

Reported per case: requests (tiles) per second, p50 / p99 latency and errors (non-2xx replies,
failed connections, exceptions). For ``cellvol serve``'s cases: ``vs_peer``, its requests/s
divided by the peer's (above 1: cellvol is faster), and ``of_limit``, its requests/s divided by
the limit's (at most about 1); null when the other side was not run. ``results`` keeps
cellvol's rows; ``peers`` and ``limits`` hold the others. Results go to
``benchmarks/results/serve-load.json`` when every case ran (or to ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

type Layout = dict[str, Any]
"""Per level: ``shape``, ``chunks``, ``shards`` (what the request generators need)."""
type Tile = tuple[int, int, int, int, int]
"""Level, axis (0 z, 1 y, 2 x), plane, tile row, tile column."""
type Maker = Callable[[Layout, random.Random], tuple[str, dict[str, str]]]

CASES = ("raw-keys", "raw-keys-peer", "raw-keys-limit", "http-16b", "tiles", "tiles-limit")
CELLVOL_CASES = ("raw keys", "tiles")
TILE = 256


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


def image_layout(image: Path) -> Layout:
    """The levels' shapes, chunks and shards, as ``/catalog`` lists them."""
    import cellvol

    volume = cellvol.open(image)
    return {
        "levels": [
            {
                "shape": list(level.shape),
                "chunks": list(level.chunks),
                "shards": list(level.shards) if level.shards else None,
            }
            for level in volume.levels
        ]
    }


# -- servers ---------------------------------------------------------------------------------


def start_server(command: Sequence[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    """Run a server process; its base URL follows ``marker`` on a line of its output."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(marker):
            return process, line.split()[1].removesuffix("catalog")
    raise RuntimeError(f"{command[:3]} did not start")


def start_cellvol(image: Path) -> tuple[subprocess.Popen[str], str]:
    command = Path(sys.executable).with_name("cellvol")
    # Every client comes from 127.0.0.1: the per-client cap, meant for a public server's
    # many addresses, would refuse all but the first 128 of them.
    serve = [str(command), "serve", f"bench={image}", "--port", "0", "--max-concurrency", "32"]
    return start_server([*serve, "--max-connections-per-client", "0"], "catalog ")


def start_helper(role: str, image: Path) -> tuple[subprocess.Popen[str], str]:
    """This script as a server (``--role static`` or ``fixed``); see :func:`serve_helper`."""
    return start_server(
        [sys.executable, __file__, "--role", role, "--image", str(image)], "listening "
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)


def serve_helper(role: str, image: Path) -> None:
    """The peer (``static``) or the HTTP ceiling (``fixed``), as cellvol's runner serves."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp

    app: ASGIApp
    if role == "static":
        app = StaticFiles(directory=image)
    else:
        wanted = re.compile(r"bytes=(\d*)-(\d*)")
        size = 1 << 40  # only named in Content-Range; every asked range lies within it
        bodies: dict[int, bytes] = {}  # made once per length: the ceiling sends, never builds

        async def ranged(request: Request) -> Response:
            match = wanted.fullmatch(request.headers.get("range", ""))
            if match is None:
                return Response(b"no range", status_code=400)
            first, last = match.groups()
            start, end = (size - int(last), size) if not first else (int(first), int(last) + 1)
            body = bodies.setdefault(end - start, bytes(end - start))
            return Response(
                body,
                status_code=206,
                headers={"Content-Range": f"bytes {start}-{end - 1}/{size}"},
                media_type="application/octet-stream",
            )

        async def bare(request: Request) -> Response:
            return Response(b"0123456789abcdef", media_type="application/octet-stream")

        app = Starlette(
            routes=[Route("/bare/{key:path}", bare), Route("/{key:path}", ranged)],
        )
    from cellvol.server._guard import ConnectionGuard, guarded_protocol

    # cellvol's runner's settings, so that only the app differs (with its connection guard,
    # less the per-client cap, as start_cellvol runs it). uvicorn binds the port itself here,
    # with TCP_NODELAY on, as cellvol's runner's own socket has it.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=guarded_protocol(ConnectionGuard(2048, 0, 10.0)),
        limit_concurrency=None,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            host, port = server.servers[0].sockets[0].getsockname()[:2]
            print(f"listening http://{host}:{port}/", flush=True)
        await serving

    asyncio.run(run())


# -- requests --------------------------------------------------------------------------------


def raw_key_requests(layout: Layout, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A level-0 shard key relative to the image's root, and its Range header."""
    level = layout["levels"][0]
    grid = [-(-n // s) for n, s in zip(level["shape"], level["shards"], strict=True)]
    key = "0/c/" + "/".join(str(rng.randrange(n)) for n in grid)
    if rng.random() < 0.5:
        inner = 1
        for shard_side, chunk_side in zip(level["shards"], level["chunks"], strict=True):
            inner *= shard_side // chunk_side
        return key, {"Range": f"bytes=-{16 * inner + 4}"}  # the index and its checksum
    start = rng.randrange(0, 8 * 2**20)
    return key, {"Range": f"bytes={start}-{start + 256 * 1024 - 1}"}


def random_tile(layout: Layout, rng: random.Random) -> Tile:
    index = rng.randrange(3)
    shape = layout["levels"][index]["shape"]
    axis = rng.randrange(3)
    rows, cols = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]
    plane = rng.randrange(shape[axis])
    row = rng.randrange(-(-shape[rows] // TILE))
    col = rng.randrange(-(-shape[cols] // TILE))
    return index, axis, plane, row, col


def tile_requests(layout: Layout, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A tile's path below ``/tiles/{name}/``."""
    index, axis, plane, row, col = random_tile(layout, rng)
    return f"{index}/{'zyx'[axis]}/{plane}/{row}/{col}.png", {}


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
        "errors": errors,
    }


async def load(
    prefix: str, make: Maker, layout: Layout, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` clients asking ``prefix + path`` for ``make``'s requests for ``seconds``."""
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
                path, headers = make(layout, rng)
                started = time.perf_counter()
                try:
                    async with session.get(prefix + path, headers=headers) as reply:
                        await reply.read()
                        if reply.status >= 400:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return summary(latencies, elapsed, errors)


# -- the tiles' limit: the same read and render, no HTTP ---------------------------------------


def client_tiles(layout: Layout, clients: int) -> Iterator[Tile]:
    """The tiles the clients draw, taken from each client's generator in turn."""
    generators = [random.Random(seed) for seed in range(clients)]
    for rng in itertools.cycle(generators):
        yield random_tile(layout, rng)


def render_tiles(image: Path, clients: int, seconds: float, threads: int) -> dict[str, Any]:
    """Tiles read and rendered as ``cellvol serve`` does, on ``threads`` threads."""
    from cellvol.server._app import TILE as SERVED_TILE
    from cellvol.server._app import Served, _box, _level
    from cellvol.server._render import encode, render

    assert SERVED_TILE == TILE
    served = Served.open(str(image), "bench")  # as the server opens it: default chunk cache
    window = (served.window.start, served.window.end)
    tiles = client_tiles(image_layout(image), clients)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            with lock:
                index, axis, plane, row, col = next(tiles)
            started = time.perf_counter()
            try:
                level = _level(served.volume, index)
                r0, c0 = row * TILE, col * TILE
                box = _box(level.shape, axis, plane, (r0, r0 + TILE), (c0, c0 + TILE))
                # The server awaits level.read_async(box): on a local store that runs this
                # very call (ChunkReader.read) in an executor thread.
                pixels = level[box]
                encode(render(pixels, window, "gray"), "png")
            except Exception:
                errors += 1
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    began = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return summary(latencies, time.perf_counter() - began, errors)


def tiles_limit(image: Path, clients: int, seconds: float, threads: int) -> dict[str, Any]:
    """:func:`render_tiles` in a process of its own, like the server's."""
    command = [sys.executable, __file__, "--role", "render", "--image", str(image)]
    command += ["--clients", str(clients), "--seconds", str(seconds)]
    command += ["--render-threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the tiles' limit failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


# -- the run ---------------------------------------------------------------------------------


def ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if numerator is None or denominator is None or not denominator["requests_per_s"]:
        return None
    return round(numerator["requests_per_s"] / denominator["requests_per_s"], 3)


def run_cases(
    cases: Sequence[str], image: Path, clients: int, seconds: float, threads: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Results, peers and limits of the chosen cases; one server process at a time."""
    layout = image_layout(image)
    results: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    limits: dict[str, Any] = {}

    def measure(label: str, prefix: str, make: Maker) -> dict[str, Any]:
        row = asyncio.run(load(prefix, make, layout, clients, seconds))
        print(json.dumps({label: row}), flush=True)
        return row

    stack = f"uvicorn {version('uvicorn')}, starlette {version('starlette')}"
    if {"raw-keys", "tiles"} & set(cases):
        process, base = start_cellvol(image)
        try:
            if "raw-keys" in cases:
                results["raw keys"] = measure("raw keys", base + "data/bench/", raw_key_requests)
            if "tiles" in cases:
                results["tiles"] = measure("tiles", base + "tiles/bench/", tile_requests)
        finally:
            stop(process)
    if "raw-keys-peer" in cases:
        process, base = start_helper("static", image)
        try:
            peers["raw keys"] = {
                "server": f"starlette StaticFiles ({stack}), the image directory at /",
                **measure("raw keys peer", base, raw_key_requests),
            }
        finally:
            stop(process)
    if {"raw-keys-limit", "http-16b"} & set(cases):
        process, base = start_helper("fixed", image)
        try:
            if "raw-keys-limit" in cases:
                limits["raw keys"] = {
                    "what": f"{stack}: each range's length of bytes from memory, 206",
                    **measure("raw keys limit", base, raw_key_requests),
                }
            if "http-16b" in cases:
                limits["http, 16 B bodies"] = {
                    "what": f"{stack}: 16 bytes from memory for every request (context only)",
                    **measure("http 16 B", base + "bare/", raw_key_requests),
                }
        finally:
            stop(process)
    if "tiles-limit" in cases:
        limits["tiles"] = {
            "what": f"cellvol's tile read + render + PNG encode in one process, {threads} threads",
            "threads": threads,
            **tiles_limit(image, clients, seconds, threads),
        }
        print(json.dumps({"tiles limit": limits["tiles"]}), flush=True)
    for name, row in results.items():
        row["vs_peer"] = ratio(row, peers.get(name))
        row["of_limit"] = ratio(row, limits.get(name))
    return results, peers, limits


def table(results: dict[str, Any], peers: dict[str, Any], limits: dict[str, Any]) -> str:
    lines = [
        "| case | requests/s | p50 (ms) | p99 (ms) | errors | vs peer | of limit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def line(name: str, row: dict[str, Any], vs_peer: str = "", of_limit: str = "") -> None:
        lines.append(
            f"| {name} | {row['requests_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['errors']} | {vs_peer} | {of_limit} |"
        )

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name in dict.fromkeys([*results, *peers, *limits]):
        if name in results:
            row = results[name]
            line(name, row, shown(row["vs_peer"]), shown(row["of_limit"]))
        if name in peers:
            line(f"{name}: peer (StaticFiles)", peers[name])
        if name in limits:
            # A limit no cellvol case is divided by (the 16 B bodies) is context only.
            context = name not in CELLVOL_CASES
            line(f"{name} (context)" if context else f"{name}: limit", limits[name])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--image", type=Path, help="serve this image instead")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument(
        "--render-threads", type=int, default=os.cpu_count() or 2, help="for tiles-limit"
    )
    parser.add_argument(
        "--out", type=Path, help="default: benchmarks/results/serve-load.json if all cases ran"
    )
    # This script is also each helper process: a server, or the tiles' limit.
    parser.add_argument("--role", choices=("static", "fixed", "render"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "render":
        row = render_tiles(args.image, args.clients, args.seconds, args.render_threads)
        print(json.dumps(row), flush=True)
        return
    if args.role is not None:
        serve_helper(args.role, args.image)
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    image = args.image or prepare_image(args.data_dir)
    cases = [c for c in CASES if c in args.cases]
    results, peers, limits = run_cases(
        cases, image, args.clients, args.seconds, args.render_threads
    )
    record = {
        "image": str(image),
        "clients": args.clients,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "results": results,
        "peers": peers,
        "limits": limits,
    }
    out = args.out or (HERE / "results" / "serve-load.json" if cases == list(CASES) else None)
    if out is not None:
        out.write_text(json.dumps(record, indent=2) + "\n")
    else:
        print("(some cases only: nothing written; --out to keep it)")
    print("\n" + table(results, peers, limits))


if __name__ == "__main__":
    main()
