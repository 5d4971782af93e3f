"""What 0.1 TB and 1 TB cost, projected from what was measured here (no new measurement).

    .venv/bin/python benchmarks/scaling.py

Reads the committed results (pyramid-16gib.json, cluster-scaling.json, read-planes.json) and
cellvol's own planner, and prints a Markdown table and ``benchmarks/results/scaling.json``.
The assumptions are printed with the table; change them with the options.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from cellvol.units import VoxelSize
from cellvol.write._plan import plan_pyramid

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SIZES = {  # uint8 volumes, isotropic voxels, cellvol's default layout (64³ in 256³)
    "0.1 TB": (2048, 6144, 8192),
    "1 TB": (4096, 16384, 16384),
}


def measured() -> dict[str, Any]:
    pyramid = json.loads((RESULTS / "pyramid-16gib.json").read_text())
    run = next(r for r in pyramid["runs"] if r["tool"] == "cellvol")
    size = math.prod(pyramid["input_shape"])
    scaling = json.loads((RESULTS / "cluster-scaling.json").read_text())
    # Storage is assumed to keep up with the workers: the runs that wrote to memory, if made.
    storage = "memory" if any(r.get("storage") == "memory" for r in scaling["runs"]) else "disk"
    cluster = {
        r["workers"]: r["seconds"]
        for r in scaling["runs"]
        if r["where"] == "LocalCluster" and r.get("storage", "disk") == storage
    }
    planes = json.loads((RESULTS / "read-planes.json").read_text())
    s3 = next(r for r in planes["s3"] if r["store"] == "cv64" and r["tool"] == "cellvol")
    return {
        "bytes_per_s_2_cores": size / run["build_seconds"],
        "peak_anon_mib": run["peak_anon_mib"],
        "cluster_efficiency": cluster[1] / cluster[2] / 2,  # 1 -> 2 workers, of the ideal 2x
        "cluster_storage": storage,
        "s3_requests_per_xy_plane": s3["XY"]["requests"],
    }


def objects(shape: tuple[int, int, int]) -> tuple[int, int]:
    """Stored objects (shards, plus each level's and the image's metadata) and levels."""
    plan = plan_pyramid(shape, VoxelSize.of(1.0))
    shards = sum(level.n_shards for level in plan.levels)
    return shards + len(plan.levels) + 4, len(plan.levels)  # zarr.json per level, group, ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", default="2,16,64,256", help="cores to project for")
    parser.add_argument(
        "--efficiency",
        type=float,
        help="parallel efficiency beyond 2 cores (default: the LocalCluster run's)",
    )
    args = parser.parse_args()
    facts = measured()
    per_core = facts["bytes_per_s_2_cores"] / 2
    efficiency = args.efficiency or facts["cluster_efficiency"]
    cores = [int(c) for c in args.cores.split(",")]
    rows: list[dict[str, Any]] = []
    for name, shape in SIZES.items():
        size = math.prod(shape)
        count, levels = objects(shape)
        minutes = {c: size / (per_core * c * (1.0 if c <= 2 else efficiency)) / 60 for c in cores}
        rows.append({"size": name, "shape": shape, "bytes": size, "objects": count,
                     "levels": levels, "minutes": minutes})  # fmt: skip
    assumptions = [
        f"build rate {per_core / 1e6:.0f} MB/s per core: cellvol's 16 GiB build on this 2-core "
        "machine (pyramid-16gib.json), input read once, zstd-3, 4 levels and more",
        f"parallel efficiency beyond 2 cores {efficiency:.0%}: the 1 -> 2 worker LocalCluster "
        f"run writing to {facts['cluster_storage']} (cluster-scaling.json); storage assumed to "
        "keep up (S3 or a parallel file system scales with the workers; one local disk does "
        "not)",
        f"memory per worker {facts['peak_anon_mib']:.0f} MiB anonymous, measured at 16 GiB and "
        "flat in the volume's size (a stage writes at most two levels: every task is one size)",
        f"S3 requests for a 512 x 512 XY plane at level 0: {facts['s3_requests_per_xy_plane']:.0f}"
        " (read-planes.json), whatever the volume's size; a 256 x 256 tile touches 16-25 chunks",
    ]
    print("| volume | shape (z, y, x) | levels | objects | " + " | ".join(
        f"minutes on {c} cores" for c in cores) + " |")  # fmt: skip
    print("|---|---|---:|---:|" + "---:|" * len(cores))
    for row in rows:
        print(
            f"| {row['size']} | {' × '.join(map(str, row['shape']))} | {row['levels']} | "
            f"{row['objects']:,} | " + " | ".join(f"{row['minutes'][c]:.1f}" for c in cores) + " |"
        )
    print("\nAssumptions:")
    for line in assumptions:
        print(f"- {line}")
    record = {"facts": facts, "assumptions": assumptions, "rows": rows}
    (RESULTS / "scaling.json").write_text(json.dumps(record, indent=2, default=list) + "\n")


if __name__ == "__main__":
    main()
