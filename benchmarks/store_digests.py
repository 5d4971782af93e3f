"""Write the pyramid benchmark cases and record a SHA-256 of every stored object.

Run it before and after a change that must not change what cellvol stores, then compare::

    .venv/bin/python benchmarks/store_digests.py --out /tmp/before.json   # on the old commit
    .venv/bin/python benchmarks/store_digests.py --out /tmp/after.json    # on the new one
    .venv/bin/python benchmarks/store_digests.py --compare /tmp/before.json /tmp/after.json

The cases are those of ``compare_pyramid.py`` (uint8, uint16 and float32 tomograms, the 3D-SEM
geometry, a uint32 label volume with ``mode``) plus the 128³-chunk layout, on a 256 MiB-voxel
synthetic input (``--shape``), each written with cellvol's defaults. Every object is
compared, the ``_cellvol/`` ledger included: none holds run statistics (they are in the
returned ``WriteResult`` only), so two writes of the same input agree object for object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

import cellvol

sys.path.insert(0, str(Path(__file__).parent))
from _inputs import write_synthetic_npy

CASES: dict[str, dict[str, Any]] = {
    "uint8": {"dtype": "uint8", "voxel_size": (1.0, 1.0, 1.0)},
    "uint16": {"dtype": "uint16", "voxel_size": (1.0, 1.0, 1.0)},
    "float32": {"dtype": "float32", "voxel_size": (1.0, 1.0, 1.0)},
    "3D-SEM": {"dtype": "uint8", "voxel_size": (30.0, 5.0, 5.0)},
    "labels": {"dtype": "uint32", "voxel_size": (1.0, 1.0, 1.0), "method": "mode"},
    "chunks128": {"dtype": "uint8", "voxel_size": (1.0, 1.0, 1.0), "chunks": (128, 128, 128)},
}


def synthetic_input(shape: tuple[int, int, int], dtype: str, data_dir: Path) -> Path:
    """The synthetic tomogram (or its labels, for uint32) as a raw ``.npy``; made once."""
    path = data_dir / f"digests_{'x'.join(map(str, shape))}_{dtype}.npy"
    return write_synthetic_npy(path, shape, dtype)


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by its path relative to ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run(shape: tuple[int, int, int], data_dir: Path, out: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, str]] = {}
    for name, case in CASES.items():
        source = np.load(synthetic_input(shape, case["dtype"], data_dir), mmap_mode="r")
        target = data_dir / f"digests-{name}.ome.zarr"
        shutil.rmtree(target, ignore_errors=True)
        options = {k: case[k] for k in ("method", "chunks") if k in case}
        cellvol.write_pyramid(source, str(target), voxel_size=case["voxel_size"], **options)
        results[name] = digests(target)
        shutil.rmtree(target)
        print(f"{name}: {len(results[name])} objects", flush=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True))


def compare(before: Path, after: Path) -> int:
    old, new = json.loads(before.read_text()), json.loads(after.read_text())
    differing = 0
    for case in sorted(set(old) | set(new)):
        a, b = old.get(case, {}), new.get(case, {})
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        differing += len(keys)
        print(f"{case}: {len(a)} objects before, {len(b)} after, {len(keys)} differ")
        for key in keys[:20]:
            print(f"    {key}")
    return 1 if differing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="256,1024,1024")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    shape = tuple(int(n) for n in args.shape.split(","))
    assert len(shape) == 3, "--shape takes three integers"
    run(shape, args.data_dir, args.out or Path("store-digests.json"))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
