"""From a new process to the first plane: interpreter start, imports, open, one read.

    .venv/bin/python benchmarks/first_plane.py            # on a fresh demo volume
    .venv/bin/python benchmarks/first_plane.py IMAGE      # on any image written by cellvol

Each orientation (XY, XZ, YZ through the middle of level 0) is read by a new ``python -c``
process, RUNS times, by cellvol and, on the same image, by its peers: tensorstore and
zarr-python opening level 0 as a zarr v3 array. Every program runs once per round, in turns,
so that the machine's drift falls on all alike. The table gives the median and the slowest
wall time of the whole process, and each tool's import alone. Files are in the page cache and
bytecode caches written (a first, untimed run of each).

The limit is what any Python reader pays before it can read anything: starting the
interpreter and importing numpy (``python -c "import numpy"``). Each cellvol figure is given as
a ratio to the fastest peer (its time over cellvol's) and as a fraction of that limit (the
limit's time over cellvol's). Results go to ``benchmarks/results/first-plane.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNS = 9
ORIENTATIONS = {"XY": 0, "XZ": 1, "YZ": 2}
# The middle plane along ``axis`` of array ``a`` (level 0), as an index tuple.
_MIDDLE = "tuple(a.shape[i] // 2 if i == {axis} else slice(None) for i in range(3))"
OPEN = {
    "cellvol": ("import cellvol", "a = cellvol.open({path!r}).level(0)"),
    "tensorstore": (
        "import tensorstore as ts",
        "a = ts.open({{'driver': 'zarr3', 'kvstore': {{'driver': 'file', "
        "'path': {level0!r}}}}}).result()",
    ),
    "zarr-python": ("import zarr", "a = zarr.open_array({level0!r}, mode='r')"),
}
READ = {
    "cellvol": "a[{middle}]",
    "tensorstore": "a[{middle}].read().result()",
    "zarr-python": "a[{middle}]",
}
LIMIT = "import numpy"
PEERS = ("tensorstore", "zarr-python")
# As a user's interpreter runs: bytecode caches written on the first import and read after.
# (Some machines set PYTHONDONTWRITEBYTECODE, which would compile cellvol anew in every run.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
    return time.perf_counter() - started


def measure(codes: dict[str, str]) -> dict[str, dict[str, float]]:
    """Median and slowest wall time of each program, run in turns so that drift hits all."""
    for code in codes.values():
        timed(code)  # warm the page cache and the interpreter's bytecode cache
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(RUNS):
        for name, code in codes.items():
            times[name].append(timed(code))
    return {
        name: {"median_s": round(statistics.median(t), 3), "max_s": round(max(t), 3)}
        for name, t in times.items()
    }


def programs(image: str) -> dict[str, dict[str, str]]:
    """Per tool: the code of its import alone and of each orientation's first plane."""
    level0 = f"{image.rstrip('/')}/0"
    out: dict[str, dict[str, str]] = {}
    for tool, (imports, opening) in OPEN.items():
        out[tool] = {"import only": imports}
        for name, axis in ORIENTATIONS.items():
            read = READ[tool].format(middle=_MIDDLE.format(axis=axis))
            out[tool][name] = f"{imports}; {opening.format(path=image, level0=level0)}; {read}"
    return out


def main() -> None:
    if len(sys.argv) > 1:
        image = sys.argv[1]
    else:
        image = str(Path(tempfile.mkdtemp()) / "demo.ome.zarr")
        cellvol_cli = Path(sys.executable).with_name("cellvol")
        subprocess.run([str(cellvol_cli), "demo", image], check=True, capture_output=True)
    codes = {"limit": LIMIT}
    for tool, reads in programs(image).items():
        codes |= {f"{tool}|{name}": code for name, code in reads.items()}
    measured = measure(codes)
    limit = measured.pop("limit")
    results: dict[str, dict[str, Any]] = {}
    for key, value in measured.items():
        tool, name = key.split("|")
        results.setdefault(tool, {})[name] = value
    print(json.dumps({"limit": limit, **results}), flush=True)
    rows = []
    for name in ("import only", *ORIENTATIONS):
        mine = results["cellvol"][name]["median_s"]
        best = min(results[peer][name]["median_s"] for peer in PEERS)
        rows.append(
            {
                "read": name,
                **{tool: results[tool][name] for tool in results},
                "vs_best_peer": round(best / mine, 2),
                "of_limit": round(limit["median_s"] / mine, 2),
            }
        )
    record = {
        "image": image,
        "runs": RUNS,
        "python": sys.version.split()[0],
        "limit": {"code": LIMIT, **limit},
        "results": rows,
    }
    (HERE / "results" / "first-plane.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        "\n| read | cellvol median (s) | slowest (s) | tensorstore | zarr-python "
        "| vs best peer | of limit |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        print(
            f"| {row['read']} | {row['cellvol']['median_s']} | {row['cellvol']['max_s']} "
            f"| {row['tensorstore']['median_s']} | {row['zarr-python']['median_s']} "
            f"| {row['vs_best_peer']} | {row['of_limit']:.0%} |"
        )
    print(f"\nlimit (python -c {LIMIT!r}): {limit['median_s']} s")


if __name__ == "__main__":
    main()
