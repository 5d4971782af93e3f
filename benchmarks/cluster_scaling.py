"""The same pyramid on one core, on two, and on a dask.distributed LocalCluster.

    .venv/bin/python benchmarks/cluster_scaling.py            # the 1 GiB input
    .venv/bin/python benchmarks/cluster_scaling.py --size-gib 4

Builds cellvol's default pyramid of compare_pyramid.py's synthetic uint8 input four ways:
local threads with 1 and 2 workers, and a LocalCluster of 1 and 2 single-threaded worker
processes on 127.0.0.1 (what an HPC or cloud cluster runs, scaled down to this machine). It
reports the wall time, the speed-up from 1 to 2 workers, the cores the build kept busy on
average (CPU seconds of every process taking part, the workers' included, over the wall time),
and a digest of every stored object, which must be identical across all runs: where the work
runs changes nothing in the bytes.

The four builds run twice: writing to ``--data-dir`` (this machine's disk), and writing to
memory (``/dev/shm``, where it exists). The second takes the disk out, as storage that keeps
up with the workers would (S3, a parallel file system): what is left is how the work itself
spreads over the cores. Results go to ``benchmarks/results/cluster-scaling.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_pyramid import make_input

HERE = Path(__file__).resolve().parent


def digest(root: Path) -> str:
    """SHA-256 over every stored object's key and bytes, in key order (bookkeeping excluded)."""
    total = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        if key.startswith("_cellvol/"):
            continue  # timestamps and run records differ by design
        total.update(key.encode())
        total.update(path.read_bytes())
    return total.hexdigest()


def cpu_seconds(client: Any) -> float:
    """CPU time (user + system) so far of this process and of every worker of ``client``."""
    own = time.process_time()  # the threaded build's tasks, or the client and its scheduler
    if client is None:
        return own
    return own + sum(client.run(time.process_time).values())


def build(source: np.ndarray, out: Path, client: Any = None, **options: Any) -> dict[str, Any]:
    """Build the pyramid; its wall time, and how many cores it kept busy on average."""
    import cellvol

    shutil.rmtree(out, ignore_errors=True)
    cpu = cpu_seconds(client)
    started = time.perf_counter()
    cellvol.write_pyramid(source, out, 4.0, n_levels=4, name="bench", client=client, **options)
    seconds = time.perf_counter() - started
    busy = (cpu_seconds(client) - cpu) / seconds
    return {"seconds": round(seconds, 2), "cores_busy": round(busy, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--size-gib", type=int, default=1)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    import cellvol

    cellvol.tune_allocator()
    source_path = make_input(args.size_gib, args.data_dir)
    source = np.load(source_path, mmap_mode="r")
    storages = {"disk": args.data_dir}
    if Path("/dev/shm").is_dir():
        storages["memory"] = Path("/dev/shm")
    runs: list[dict[str, Any]] = []
    for storage, root in storages.items():
        out = root / "cluster-scaling.zarr"
        for workers in (1, 2):
            result = build(source, out, workers=workers)
            runs.append({"where": "threads", "workers": workers, **result})
            runs[-1].update(storage=storage, digest=digest(out))
            print(json.dumps(runs[-1]), flush=True)
        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(cellvol.tune_allocator)  # the workers' opt-in, as docs/pyramid.md says
                result = build(source, out, client)
            runs.append({"where": "LocalCluster", "workers": workers, **result})
            runs[-1].update(storage=storage, digest=digest(out))
            print(json.dumps(runs[-1]), flush=True)
        shutil.rmtree(out, ignore_errors=True)
        for where in ("threads", "LocalCluster"):
            one, two = (
                r["seconds"] for r in runs if r["where"] == where and r["storage"] == storage
            )
            print(f"{where}, writing to {storage}: 1 -> 2 workers speed-up {one / two:.2f}x")
    record = {
        "input": str(source_path),
        "size_gib": args.size_gib,
        "cpus": os.cpu_count(),
        "runs": runs,
        "identical_bytes": len({r["digest"] for r in runs}) == 1,
    }
    (HERE / "results" / "cluster-scaling.json").write_text(json.dumps(record, indent=2) + "\n")
    print("identical bytes in every run:", record["identical_bytes"])


if __name__ == "__main__":
    main()
