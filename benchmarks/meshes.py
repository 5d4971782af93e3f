"""Segment surfaces: time, triangles per segment and peak memory of ``cellvol.compute_meshes``.

    .venv/bin/python benchmarks/meshes.py                  # both cases
    .venv/bin/python benchmarks/meshes.py --case sstem     # one

Cases:

``sstem``
    The ssTEM stack in ``../shared/data/sstem`` (30 x 512 x 512, 50 x 4 x 4 nm voxels): its
    cell interiors (label 255) split into 3-D connected regions, one segment each. Through
    50 nm sections the neurites touch: one segment fills most of the stack, the hard case
    for a triangle budget, beside a few small ones.
``sstem-sections``
    The same interiors split into connected regions section by section (as the challenge's
    2-D labels are drawn): thousands of segments, each one section (50 nm) thick.
``synthetic-1gib``
    The synthetic tomogram's instance labels (:class:`cellvol.synthetic.SyntheticVolume`,
    seed 0), 256 x 1024 x 1024 uint32 (1 GiB), 1 nm voxels: thousands of vesicles and
    particles. Written from the procedural volume block by block, never whole in memory.

Each image and its labels (without meshes) are written once, untimed, under ``--data-dir``.
Then the meshes are computed (``force=True``, the default triangle budget) in a fresh process,
measured from outside: wall time, peak anonymous and total resident memory
(``_measure.measure``). Results go to ``benchmarks/results/meshes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure

HERE = Path(__file__).resolve().parent

SSTEM = HERE.parent.parent / "shared" / "data" / "sstem"
SYNTHETIC_SHAPE = (256, 1024, 1024)
CASES = ["sstem", "sstem-sections", "synthetic-1gib"]

# Run in the measured child: compute, then report what was stored.
CHILD = """
import json, time, cellvol
started = time.perf_counter()
index = cellvol.compute_meshes({image!r}, "cells", force=True)
seconds = time.perf_counter() - started
open({out!r}, "w").write(json.dumps({{
    "mesh_seconds": seconds,
    "triangles": [e.triangles for e in index.segments.values()],
    "levels": [e.level for e in index.segments.values()],
    "steps": [list(e.step) for e in index.segments.values()],
    "skipped": len(index.skipped),
    "budget": index.triangle_budget,
}}))
"""


def sstem_image(data_dir: Path, sections: bool) -> Path:
    """The ssTEM image with its cell-interior regions as labels ``cells``; written once."""
    import cellvol
    from cellvol.formats._open import open_source

    image = data_dir / f"meshes-sstem{'-sections' if sections else ''}.ome.zarr"
    if (image / "labels" / "cells").is_dir():
        return image
    from skimage.measure import label as connected

    cellvol.convert(SSTEM / "image", image, voxel_size=(50, 4, 4), overwrite=True)
    interiors = np.asarray(open_source(SSTEM / "label").array[:]) == 255
    if sections:
        instances = np.zeros(interiors.shape, np.uint32)
        for z, section in enumerate(interiors):
            found = connected(section, connectivity=1).astype(np.uint32)
            instances[z] = np.where(found > 0, found + int(instances.max()), 0)
    else:
        instances = connected(interiors, connectivity=1).astype(np.uint32)
    cellvol.write_labels(image, instances, "cells", meshes=False)
    return image


def synthetic_image(data_dir: Path) -> Path:
    """A 1 GiB synthetic label volume over an empty image; written once, block by block."""
    import dask.array as da

    import cellvol
    from cellvol.synthetic import SyntheticVolume

    image = data_dir / "meshes-synthetic-1gib.ome.zarr"
    if (image / "labels" / "cells").is_dir():
        return image
    zeros = da.zeros(SYNTHETIC_SHAPE, np.uint8, chunks=(64, 512, 512))
    cellvol.write_pyramid(zeros, image, 1.0, overwrite=True)
    labels = SyntheticVolume(SYNTHETIC_SHAPE, seed=0, kind="labels")
    cellvol.write_labels(image, labels, "cells", meshes=False)
    return image


def run_case(name: str, image: Path) -> dict[str, Any]:
    report = image.with_name(f"{image.name}.meshes.json")  # too long for the captured output
    child = CHILD.format(image=str(image), out=str(report))
    measured = measure([sys.executable, "-c", child], timeout=3600)
    if measured.returncode != 0:
        raise SystemExit(f"{name}: meshing failed:\n{measured.output}")
    found = json.loads(report.read_text())
    triangles = sorted(found["triangles"])
    import cellvol

    labels = cellvol.open(image).labels["cells"]
    return {
        "case": name,
        "shape": list(labels.shape),
        "dtype": str(labels.dtype),
        "voxel_size_nm": list(labels.levels[0].scale),
        "segments": len(labels.segments),
        "meshed": len(triangles),
        "skipped": found["skipped"],
        "triangle_budget": found["budget"],
        "process_seconds": measured.seconds,
        "mesh_seconds": found["mesh_seconds"],
        "segments_per_second": len(triangles) / found["mesh_seconds"],
        "triangles_total": sum(triangles),
        "triangles_per_segment": {
            "mean": statistics.fmean(triangles) if triangles else 0.0,
            "median": statistics.median(triangles) if triangles else 0,
            "p95": triangles[int(0.95 * (len(triangles) - 1))] if triangles else 0,
            "max": triangles[-1] if triangles else 0,
        },
        "segments_by_level": {
            str(level): found["levels"].count(level) for level in sorted(set(found["levels"]))
        },
        "subsampled_segments": sum(1 for s in found["steps"] if max(s) > 1),
        "peak_anon_mib": measured.peak_anon_mib,
        "peak_rss_mib": measured.peak_rss_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "meshes.json")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in args.case or CASES:
        if name.startswith("sstem") and not SSTEM.is_dir():
            print(f"{name}: skipped, {SSTEM} is absent", flush=True)
            continue
        if name.startswith("sstem"):
            image = sstem_image(args.data_dir, sections=name == "sstem-sections")
        else:
            image = synthetic_image(args.data_dir)
        result = run_case(name, image)
        runs.append(result)
        per = result["triangles_per_segment"]
        print(
            f"{name}: {result['meshed']} segments in {result['mesh_seconds']:.1f} s, "
            f"triangles/segment mean {per['mean']:.0f} max {per['max']}, "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    report = {
        "benchmark": "meshes",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
