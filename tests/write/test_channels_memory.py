"""A 2-channel 1 GiB image is written in bounded memory (slow: it writes the whole GiB)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SHAPE = (2, 512, 512, 1024)  # c, z, y, x: 1 GiB of uint16
MEMORY_LIMIT = 256 * 2**20

# Run in a fresh process, so that its peak resident memory is the write's alone.
# VmHWM, not getrusage: a child's ru_maxrss starts from its parent's, the process that made
# the input.
_CHILD = """
import json, re, sys
import numpy as np
import cellvol

def high_water_mark():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

source = np.load(sys.argv[1], mmap_mode="r")
before = high_water_mark()
result = cellvol.write_pyramid(
    source, sys.argv[2], (40, 8, 8), channel_names=["em", "lm"],
    memory_limit=int(sys.argv[3]), workers=2,
)
peak = high_water_mark()
print(json.dumps({"before": before, "peak": peak, "levels": len(result.plan.levels)}))
"""


def _write_input(path: Path) -> None:
    """A memory-mapped .npy of the image, written a plane at a time (smooth, and noisy)."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=SHAPE)
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(SHAPE[2]), np.arange(SHAPE[3])).astype(np.uint16)
    for c in range(SHAPE[0]):
        for z in range(SHAPE[1]):
            array[c, z] = ramp * (c + 1) + rng.integers(0, 16, SHAPE[2:], dtype=np.uint16)
    array.flush()
    del array


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_a_two_channel_gibibyte_is_written_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "image.npy"
    _write_input(source)
    dest = tmp_path / "image.ome.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(source), str(dest), str(MEMORY_LIMIT)],
        capture_output=True, text=True, timeout=1800, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    grown = measured["peak"] - measured["before"]
    print(f"peak RSS {measured['peak'] / 2**20:.0f} MiB, grown {grown / 2**20:.0f} MiB")
    # The tasks stay within the memory limit; the rest is the libraries the write imports
    # (zarr, codecs, pydantic: about 120 MiB) and allocator slack. The input (1 GiB, memory
    # mapped) never becomes resident as a whole.
    assert grown < MEMORY_LIMIT + 128 * 2**20
    assert measured["peak"] < 2**30 // 2
    import cellvol

    volume = cellvol.open(dest)
    assert volume.channels == ("em", "lm")
    expected = np.load(source, mmap_mode="r")
    for c in range(2):  # spot checks of full resolution; every level keeps both channels
        np.testing.assert_array_equal(volume[c, 300, 100:140], expected[c, 300, 100:140])
    assert all(level.shape[0] == 2 for level in volume.levels)
