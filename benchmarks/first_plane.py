"""From a new process to the first plane: interpreter start, ``import cellvol``, open, one read.

    .venv/bin/python benchmarks/first_plane.py            # on a fresh demo volume
    .venv/bin/python benchmarks/first_plane.py IMAGE      # on any image

Each orientation (XY, XZ, YZ through the middle of level 0) is read by a new ``python -c``
process, RUNS times; the table gives the median and the slowest wall time of the whole process,
and how much of it is ``import cellvol`` alone. Files are in the page cache (the first run is
discarded). Results go to ``benchmarks/results/first-plane.json``.
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

HERE = Path(__file__).resolve().parent
RUNS = 7
READS = {
    "import only": "import cellvol",
    "XY": "import cellvol; v = cellvol.open({path!r}); v.plane('z', v.shape[0] // 2)",
    "XZ": "import cellvol; v = cellvol.open({path!r}); v.plane('y', v.shape[1] // 2)",
    "YZ": "import cellvol; v = cellvol.open({path!r}); v.plane('x', v.shape[2] // 2)",
}


# As a user's interpreter runs: bytecode caches written on the first import and read after.
# (Some machines set PYTHONDONTWRITEBYTECODE, which would compile cellvol anew in every run.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
    return time.perf_counter() - started


def main() -> None:
    if len(sys.argv) > 1:
        image = sys.argv[1]
    else:
        image = str(Path(tempfile.mkdtemp()) / "demo.ome.zarr")
        cellvol_cli = Path(sys.executable).with_name("cellvol")
        subprocess.run([str(cellvol_cli), "demo", image], check=True, capture_output=True)
    rows = []
    for name, template in READS.items():
        code = template.format(path=image)
        timed(code)  # warm the page cache and the interpreter's bytecode cache
        times = [timed(code) for _ in range(RUNS)]
        rows.append(
            {
                "read": name,
                "median_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    record = {"image": image, "runs": RUNS, "python": sys.version.split()[0], "results": rows}
    (HERE / "results" / "first-plane.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n| read | median (s) | slowest (s) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['read']} | {row['median_s']} | {row['max_s']} |")


if __name__ == "__main__":
    main()
