"""A disk that fills up during a write: one clear line, then a resume finishes the image.

The full disk is real: a 4 MiB tmpfs mounted in a private mount namespace (``unshare`` as an
unprivileged user), where the conversion runs; then the tmpfs grows and ``--resume`` ends it.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.errors import OutOfSpaceError


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    )
    return probe.returncode == 0


_CHECK = """
import json, sys, numpy as np, cellvol
volume = cellvol.open(sys.argv[1])
print(json.dumps(bool(np.array_equal(volume.level(0)[:], np.load(sys.argv[2])))))
"""


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare of user and mount namespaces")
def test_a_full_disk_is_one_line_and_a_resume_finishes(tmp_path: Path) -> None:
    source = tmp_path / "in.npy"
    np.save(
        source, np.random.default_rng(0).integers(0, 255, (128, 256, 256), dtype=np.uint8)
    )  # 8 MiB
    mount = tmp_path / "small"
    mount.mkdir()
    out = mount / "out.ome.zarr"
    cellvol_exe = Path(sys.executable).with_name("cellvol")
    script = f"""
mount -t tmpfs -o size=4m tmpfs {mount} || exit 90
{cellvol_exe} convert {source} {out} --voxel-size 1,1,1 2>{tmp_path}/first.err
echo $? > {tmp_path}/first.rc
mount -o remount,size=64m {mount} || exit 91
{cellvol_exe} convert {source} {out} --voxel-size 1,1,1 --resume >/dev/null 2>{tmp_path}/second.err
echo $? > {tmp_path}/second.rc
{sys.executable} -c '{_CHECK}' {out} {source} > {tmp_path}/check.json
"""
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() != "0"
    assert "Traceback" not in first
    lines = [line for line in first.splitlines() if line.strip()]
    assert len(lines) == 2, first  # the error, and a hint
    assert lines[0].startswith("error: ")
    assert "no space left on the device" in lines[0]
    assert str(out) in lines[0]
    assert lines[1].startswith("hint: ")
    assert "--resume" in lines[1]
    assert (tmp_path / "second.rc").read_text().strip() == "0", (
        tmp_path / "second.err"
    ).read_text()
    assert json.loads((tmp_path / "check.json").read_text()) is True


def test_a_full_disk_is_an_out_of_space_error(tmp_path: Path, monkeypatch) -> None:
    import os

    import cellvol._store._objects as objects

    calls = {"n": 0}

    class FillingDisk:  # os, as cellvol's object writer sees it, on a disk that fills up
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def replace(src: str, dst: str) -> None:
            calls["n"] += 1
            if calls["n"] == 3:  # a few objects in
                raise OSError(errno.ENOSPC, "No space left on device")
            os.replace(src, dst)

    monkeypatch.setattr(objects, "os", FillingDisk())
    data = np.zeros((32, 64, 64), np.uint8)
    with pytest.raises(OutOfSpaceError, match="no space left on the device while writing /") as e:
        cellvol.write_pyramid(data, tmp_path / "v.ome.zarr", 1.0, chunks=(16, 16, 16))
    assert e.value.errno == errno.ENOSPC
    assert isinstance(e.value, OSError)
    monkeypatch.undo()
    cellvol.write_pyramid(data, tmp_path / "v.ome.zarr", 1.0, chunks=(16, 16, 16), resume=True)
    np.testing.assert_array_equal(cellvol.open(tmp_path / "v.ome.zarr")[:], data)
