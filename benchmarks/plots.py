"""Draw the benchmark page's figures from the committed results.

    .venv/bin/python benchmarks/plots.py      # writes docs/img/*.png

Every figure is drawn from a JSON file in ``benchmarks/results``; nothing is measured here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
IMAGES = HERE.parent / "docs" / "img"


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def pyramid() -> None:
    runs = _load("pyramid-1gib.json")["runs"]
    tools = [r["tool"] for r in runs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.barh(tools, [r["build_seconds"] for r in runs], color="#4878a8")
    left.set_xlabel("build time (s), 1 GiB uint8, 4 levels")
    left.invert_yaxis()
    right.barh(tools, [r["peak_anon_mib"] for r in runs], color="#a86048")
    right.set_xlabel("peak anonymous memory (MiB)")
    right.invert_yaxis()
    right.set_yticklabels([])
    figure.tight_layout()
    figure.savefig(IMAGES / "pyramid-1gib.png", dpi=110)
    plt.close(figure)


def planes() -> None:
    rows = [r for r in _load("read-planes.json")["local"] if "cache" not in r["tool"]]
    stores = ["ts128", "cv32", "cv48", "cv64", "cv64z", "cv128"]
    tools = ["tensorstore", "zarr-python", "cellvol"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=False)
    for ax, level in zip(axes, (0, 2), strict=True):
        width = 0.25
        for i, tool in enumerate(tools):
            values = [
                next(
                    r["XY"]["median_ms"]
                    for r in rows
                    if r["store"] == store and r["tool"] == tool and r["level"] == level
                )
                for store in stores
            ]
            ax.bar([x + i * width for x in range(len(stores))], values, width, label=tool)
        ax.set_xticks([x + width for x in range(len(stores))], stores)
        ax.set_ylabel("XY plane, median (ms)")
        ax.set_title(f"level {level}")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(IMAGES / "read-planes.png", dpi=110)
    plt.close(figure)


def scaling() -> None:
    runs = _load("cluster-scaling.json")["runs"]
    figure, ax = plt.subplots(figsize=(5, 3))
    for storage, style in (("disk", "-"), ("memory", "--")):
        for where, marker in (("threads", "o"), ("LocalCluster", "s")):
            points = [
                (r["workers"], r["seconds"])
                for r in runs
                if r["where"] == where and r.get("storage", "disk") == storage
            ]
            if points:
                label = f"{where}, writing to {storage}"
                ax.plot(*zip(*points, strict=True), style, marker=marker, label=label)
    ax.set_xticks([1, 2])
    ax.set_xlabel("workers")
    ax.set_ylabel("1 GiB build (s)")
    ax.legend()
    figure.tight_layout()
    figure.savefig(IMAGES / "cluster-scaling.png", dpi=110)
    plt.close(figure)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    pyramid()
    planes()
    scaling()
    print("written:", ", ".join(sorted(p.name for p in IMAGES.glob("*.png"))))


if __name__ == "__main__":
    main()
