"""A write stopped at each of its final phases leaves an image that reads right or not at all.

The last steps of a write are: every shard (data), the manifest, the OME metadata, the
completion marker. A process killed between two of them leaves the objects before it, each
whole (every object is written whole and synced). Stopping the write at each boundary, and
then losing a shard as well, must never leave an image that reads a lost shard as zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import cellvol
from cellvol.errors import CellvolError
from cellvol.write._ledger import Ledger

SHAPE = (32, 64, 64)
LOST_SHARD = ("0", "c", "1", "0", "1")  # z 16:32, y 0:32, x 32:64


class Stopped(BaseException):
    """Stands for the process's death: no clean-up runs."""


def _stop(*args: object, **kwargs: object) -> None:
    raise Stopped


@pytest.mark.parametrize("phase", ["before manifest", "before metadata", "before marker", "none"])
def test_a_stopped_write_never_reads_a_lost_shard_as_zeros(
    phase: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = np.random.default_rng(5).integers(1, 255, SHAPE, dtype=np.uint8)
    path = tmp_path / "v.ome.zarr"
    stops = {
        "before manifest": (Ledger, "write_manifest"),
        "before metadata": (zarr.core.attributes.Attributes, "update"),
        "before marker": (Ledger, "mark_complete"),
    }
    if phase in stops:
        monkeypatch.setattr(*stops[phase], _stop)
        with pytest.raises(Stopped):
            cellvol.write_pyramid(data, path, 1.0, chunks=(16, 16, 16), shards=(16, 32, 32))
        monkeypatch.undo()
    else:
        cellvol.write_pyramid(data, path, 1.0, chunks=(16, 16, 16), shards=(16, 32, 32))

    # As left: the image reads its data exactly, or is refused.
    try:
        volume = cellvol.open(path)
    except CellvolError:
        volume = None
    if volume is not None:
        np.testing.assert_array_equal(volume[:], data)

    # With a shard lost as well: refused at open or at the read, never zeros.
    path.joinpath(*LOST_SHARD).unlink()
    try:
        read = cellvol.open(path)[20]
    except CellvolError:
        return
    pytest.fail(f"stopped {phase}, a lost shard read as {np.unique(read)[:5]} without an error")
