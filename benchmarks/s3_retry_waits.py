"""What a failed S3 request costs: s3fs and botocore's own retries against cellvol's.

    .venv/bin/python benchmarks/s3_retry_waits.py

One request at a time, so that every wait is on the clock: 100 PUTs of 100 kB and a GET of
each, through the fault proxy (``_fault_proxy.py``, in this process) in front of moto (in
this process too), at 0, 10 and 20 % faults of every kind but delays. Once with a plain
``s3fs.S3FileSystem`` (botocore's legacy retries: up to 4, waiting a random 0-1 s, 0-2 s,
0-4 s...; s3fs's loop around them: 5 tries of some errors, 0.1 s to 0.8 s apart) and once with
cellvol's filesystem (one budget, at most 50 ms before the first retry). Results go to
``results/s3-retry-waits.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _fault_proxy import FaultProxy, FaultSettings

HERE = Path(__file__).resolve().parent
KINDS = ("500", "503", "reset", "reset-body", "short-body", "lost-answer")
PAIRS = 100


def measure(make: Any, proxy: FaultProxy, rate: float, prefix: str) -> dict[str, Any]:
    from zarr.core.sync import sync

    proxy.configure(rate=rate, seed=5, kinds=KINDS)
    proxy._seen.clear()  # the same draws for both filesystems
    proxy.take_counts()
    fs = make()
    data = os.urandom(100_000)

    async def run() -> tuple[float, int]:
        await fs.set_session()
        failed = 0
        started = time.perf_counter()
        for i in range(PAIRS):
            try:
                await fs._pipe_file(f"bench/{prefix}{i}", data)
                if await fs._cat_file(f"bench/{prefix}{i}", start=0) != data:
                    failed += 1
            except Exception:  # counted: a pair that gave up
                failed += 1
        return time.perf_counter() - started, failed

    seconds, failed = sync(run())
    counts = proxy.take_counts()
    return {
        "rate": rate,
        "ms_per_pair": round(seconds / PAIRS * 1000, 1),
        "failed_pairs": failed,
        "requests": counts.pop("requests", 0),
        "faults": sum(counts.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "s3-retry-waits.json")
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    from cellvol._store._retry import RetryPolicy
    from cellvol._store._s3fs import retrying_filesystem

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    upstream = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=upstream).create_bucket(Bucket="bench")
    proxy = FaultProxy(upstream, FaultSettings()).start()
    options = {"endpoint_url": proxy.url, "skip_instance_cache": True}
    no_botocore_retries = {"retries": {"mode": "standard", "total_max_attempts": 1}}
    tools = {
        "s3fs and botocore": lambda: s3fs.S3FileSystem(**options, asynchronous=True),
        "cellvol": lambda: retrying_filesystem(
            RetryPolicy(), {**options, "config_kwargs": no_botocore_retries}
        ),
    }
    rows = []
    try:
        for tool, make in tools.items():
            for rate in (0.0, 0.1, 0.2):
                rows.append({"tool": tool, **measure(make, proxy, rate, tool[:4])})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        proxy.stop()
        moto.stop()
    for row in rows:
        clean = next(r for r in rows if r["tool"] == row["tool"] and r["rate"] == 0.0)
        row["ratio"] = round(row["ms_per_pair"] / clean["ms_per_pair"], 2)
    args.out.write_text(json.dumps({"benchmark": "s3-retry-waits", "rows": rows}, indent=2) + "\n")
    print("| retries | faults | ms per PUT+GET | x fault-free | faults met | pairs failed |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['tool']} | {row['rate']:.0%} | {row['ms_per_pair']} | {row['ratio']} | "
            f"{row['faults']} | {row['failed_pairs']} |"
        )


if __name__ == "__main__":
    main()
