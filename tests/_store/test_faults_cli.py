"""``cellvol convert`` to S3 when one shard's key keeps failing: one line naming it, then --resume.

The command line has no retry option: it runs with the default budget (10 tries). The fault
proxy (``fault_proxy``) fails every request for one level-0 shard until the test lifts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import S3Bucket

import cellvol
from cellvol.cli import main
from cellvol.synthetic import SyntheticVolume

pytestmark = pytest.mark.s3


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def test_convert_stops_naming_the_failing_shard_and_resume_finishes(
    fault_proxy: Any, s3_bucket: S3Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.asarray(SyntheticVolume((32, 128, 256), "uint8", seed=2)[:])
    np.save(tmp_path / "in.npy", data)
    url = s3_bucket.url("img.ome.zarr")
    doomed = f"{s3_bucket.name}/img.ome.zarr/0/c/0/0/1"
    args = [
        "convert",
        str(tmp_path / "in.npy"),
        url,
        "--voxel-size",
        "1,1,1",
        "--chunks",
        "32,64,64",
        "--shards",
        "32,128,128",
        "--endpoint-url",
        fault_proxy.url,
    ]
    fault_proxy.configure(fail_keys=f"/{doomed}$", fail_kinds=("503", "500", "reset"))
    status, stderr = _run(args, capsys)
    lines = stderr.splitlines()
    assert status == 1
    assert len(lines) == 2, stderr
    assert lines[0].startswith("error: S3 PutObject of s3://" + doomed + " "), stderr
    assert "10 tries" in lines[0]
    assert lines[1].startswith("hint: "), stderr
    assert "--resume" in lines[1], stderr

    fault_proxy.configure(fail_keys=None)
    status, stderr = _run([*args, "--resume"], capsys)
    assert status == 0, stderr
    image = cellvol.open(url, storage_options=s3_bucket.storage_options)
    assert np.array_equal(image[:], data)
