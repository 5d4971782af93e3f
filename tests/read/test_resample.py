"""Resampling one image onto another's grid: values kept exactly where they must be."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cellvol


def test_nearest_keeps_label_ids_above_float32s_integers(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # Odd IDs above 2**24: float32 cannot represent them, so any float cast changes them.
    labels = (rng.integers(2**23, 2**31, (6, 12, 12), dtype=np.uint64) * 2 + 1).astype(np.uint32)
    reference = np.zeros((6, 12, 12), np.uint32)
    cellvol.write_pyramid(
        reference, tmp_path / "ref.ome.zarr", (1, 1, 1), n_levels=1, ome_version="0.6"
    )
    cellvol.write_pyramid(
        labels, tmp_path / "lab.ome.zarr", (1, 1, 1), n_levels=1, ome_version="0.6"
    )
    scene = tmp_path / "s.zarr"
    cellvol.link(
        scene,
        {"ref": tmp_path / "ref.ome.zarr", "lab": tmp_path / "lab.ome.zarr"},
        {"lab": {"translation": [0.2, -0.3, 0.1]}},
    )
    found = np.asarray(
        cellvol.open_scene(scene).resample("lab", like="ref", interpolation="nearest").compute()
    )
    assert found.dtype == np.uint32
    inside = found != 0
    assert inside.mean() > 0.5
    # A shift under half a voxel: each voxel takes exactly its own source label.
    np.testing.assert_array_equal(found[inside], labels[inside])
