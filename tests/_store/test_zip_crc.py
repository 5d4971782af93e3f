"""The zip CRC-32 cellvol computes (ISA-L's) is zlib's, for every kind of buffer it is given."""

from __future__ import annotations

import mmap
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from cellvol._store._zip import zip_crc32

_DATA = np.random.default_rng(7).integers(0, 255, (3 << 20) + 13, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 63, 64, 4095, 4096, 65537, len(_DATA)])
def test_it_is_zlibs_crc32(size: int) -> None:
    assert zip_crc32(_DATA[:size]) == zlib.crc32(_DATA[:size])


def test_it_continues_a_running_value_as_zlib_does() -> None:
    running = 0
    for start in range(0, len(_DATA), 1 << 20):
        running = zip_crc32(_DATA[start : start + (1 << 20)], running)
    assert running == zlib.crc32(_DATA)
    assert zip_crc32(b"", 12345) == zlib.crc32(b"", 12345) == 12345


def test_it_reads_memoryviews_and_file_mappings(tmp_path: Path) -> None:
    view = memoryview(_DATA)[5:-7]  # unaligned, as a chunk inside a shard is
    assert zip_crc32(view) == zlib.crc32(view)
    path = tmp_path / "data.bin"
    path.write_bytes(_DATA)
    with open(path, "rb") as source, mmap.mmap(source.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert zip_crc32(mapped) == zlib.crc32(_DATA)


def test_cellvol_imports_and_packs_without_isal(tmp_path: Path) -> None:
    # As on a platform with no isal wheel: the import is refused, zlib's CRC-32 stands in.
    script = f"""
import sys, zipfile, zlib
sys.modules["isal"] = None
import numpy as np
import cellvol
from cellvol._store._zip import zip_crc32
assert zip_crc32(b"cellvol", 5) == zlib.crc32(b"cellvol", 5)
image = cellvol.write_pyramid(np.arange(4096, dtype=np.uint16).reshape(16, 16, 16),
                              {str(tmp_path / "i.ome.zarr")!r}, 1.0, n_levels=1)
archive = cellvol.pack({str(tmp_path / "i.ome.zarr")!r}, {str(tmp_path / "i.ozx")!r})
assert zipfile.ZipFile(archive).testzip() is None
assert not cellvol.verify(archive).problems
assert "isal" not in {{name.split(".")[0] for name in sys.modules if sys.modules[name]}}
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
