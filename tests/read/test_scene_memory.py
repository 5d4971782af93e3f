"""Resampling a large LM image into EM space holds a few blocks at a time, never the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clem_helpers import TRUE_AFFINE

import cellvol

#: 512 MiB of uint8 LM, and an EM grid as large.
_SHAPE = (256, 1024, 2048)


def _ramp(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    # A procedural LM: a value that varies along every axis, cheap to make and to check.
    assert block_info is not None
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
    return ((z + 2 * y + 3 * x) % 251).astype(np.uint8)


@pytest.mark.slow
def test_resampling_512_mib_of_lm_stays_in_bounded_memory(tmp_path: Path) -> None:
    import dask.array as da

    lm = da.zeros(_SHAPE, dtype=np.uint8, chunks=(64, 256, 256)).map_blocks(_ramp, dtype=np.uint8)
    cellvol.write_pyramid(lm, tmp_path / "lm.ome.zarr", (48, 32, 32), n_levels=1,
                          ome_version="0.6")  # fmt: skip
    em = da.zeros(_SHAPE, dtype=np.uint8, chunks=(64, 256, 256))
    cellvol.write_pyramid(em, tmp_path / "em.ome.zarr", (48, 32, 32), n_levels=1,
                          ome_version="0.6")  # fmt: skip
    cellvol.link(tmp_path / "s.zarr", {"em": tmp_path / "em.ome.zarr",
                 "lm": tmp_path / "lm.ome.zarr"}, {"lm": TRUE_AFFINE})  # fmt: skip
    # A fresh process, so that its peak resident memory is the resampling's alone.
    script = textwrap.dedent(f"""
        import json, re
        import numpy as np
        import cellvol
        import scipy.ndimage
        scene = cellvol.open_scene({str(tmp_path / "s.zarr")!r})
        out = scene.resample("lm", like="em")
        status = open("/proc/self/status").read()
        before = int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
        total = int(out.sum(dtype=np.uint64).compute())
        block = np.asarray(out[100:104, 500:504, 900:904].compute())
        peak = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
        print(json.dumps({{"peak_kib": int(peak), "before_kib": before, "total": total,
                          "block": block.tolist()}}))
    """)
    # Without the chunk cache (256 MiB by default), so that what is measured is the resampling.
    env = {**os.environ, "PYTHONPATH": str(Path(cellvol.__file__).parents[1]),
           "CELLVOL_CACHE_BYTES": "0"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=900, check=True)  # fmt: skip
    found = json.loads(done.stdout)
    growth = (found["peak_kib"] - found["before_kib"]) / 1024
    print(f"peak resident memory {found['peak_kib'] / 1024:.0f} MiB, {growth:.0f} MiB of it "
          "while resampling")  # fmt: skip
    # Blocks, their source boxes and the sum in flight: a small fraction of the 512 MiB read.
    assert growth < 160, found
    assert found["total"] > 0
    # A block of the result equals the ramp sampled directly at the mapped positions.
    back = np.linalg.inv(TRUE_AFFINE)
    index = np.indices((4, 4, 4)).reshape(3, -1) + np.array([[100], [500], [900]])
    em_nm = index * np.array([[48.0], [32.0], [32.0]])
    lm_index = (back[:3, :3] @ em_nm + back[:3, 3][:, None]) / np.array([[48.0], [32.0], [32.0]])
    from scipy.ndimage import map_coordinates

    lo = np.floor(lm_index.min(axis=1)).astype(int) - 1
    hi = np.ceil(lm_index.max(axis=1)).astype(int) + 2
    z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    ramp = ((z + 2 * y + 3 * x) % 251).astype(np.float32)
    expected = map_coordinates(ramp, lm_index - lo[:, None], order=1)
    np.testing.assert_array_equal(np.asarray(found["block"]).reshape(-1), np.rint(expected))
