"""Pyramid builds: dtypes, isotropic tomograms and anisotropic 3D-SEM, label volumes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol

CASES = {
    "tomogram": ((4.0, 4.0, 4.0), "mean"),  # isotropic: 2x along every axis
    "3D-SEM": ((30.0, 5.0, 5.0), "mean"),  # anisotropic: y and x first
}


def _build(benchmark: Any, source: np.ndarray, out: Path, voxel: Any, method: str) -> None:
    def setup() -> None:
        shutil.rmtree(out, ignore_errors=True)

    benchmark.pedantic(
        cellvol.write_pyramid,
        args=(source, out, voxel),
        kwargs={"method": method, "name": "bench"},
        setup=setup,
        rounds=3,
    )
    mean = benchmark.stats.stats.mean if benchmark.stats else None
    if mean:
        benchmark.extra_info["input_MB_per_s"] = round(source.nbytes / mean / 1e6, 1)
    assert (out / "zarr.json").exists()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_pyramid(benchmark: Any, inputs: dict, workdir: Path, dtype: str, kind: str) -> None:
    voxel, method = CASES[kind]
    _build(benchmark, inputs[dtype], workdir / f"w-{kind}-{dtype}.zarr", voxel, method)


def test_label_pyramid(benchmark: Any, inputs: dict, workdir: Path) -> None:
    _build(benchmark, inputs["labels"], workdir / "w-labels.zarr", 4.0, "mode")
