"""Proving that a resumed write reads the input it started from.

Each finished level-0 shard is recorded with the CRC32C of the input block it was made from.
Before a resume reuses any shard, every such block is read from the input again and its CRC
compared: a resume over a changed input (a file edited, re-exported or swapped) is refused
instead of mixing old and new voxels in one image. Coarser shards are made from finished
level-0 shards, so proving level 0 proves them too. The cost is one read of the part of the
input already written, on every core; a block's CRC costs far less than its reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import google_crc32c
import numpy as np
import numpy.typing as npt

from cellvol._codec._keys import shard_object_key
from cellvol.errors import SourceChangedError
from cellvol.write._inputs import read_source
from cellvol.write._ledger import ShardKey, ShardRecord
from cellvol.write._plan import LevelPlan, Region

__all__ = ["input_digest", "prove_inputs"]


def input_digest(block: npt.NDArray[Any]) -> str:
    """The CRC32C of an input block's voxels in C order, as 8 hex digits."""
    data = np.ascontiguousarray(block)
    return f"{google_crc32c.value(data.view(np.uint8).reshape(-1)):08x}"


def prove_inputs(
    source: Any,
    level0: LevelPlan,
    finished: Mapping[ShardKey, ShardRecord],
    url: str,
    workers: int | None = None,
) -> None:
    """Check every finished level-0 shard's input block against the source as it is now.

    Parameters
    ----------
    source
        The write's input, as the tasks read it.
    level0
        The plan of level 0.
    finished
        The ledger's records; those of level 0 carry their input's CRC.
    url
        The destination, for messages.
    workers
        Blocks read at once (default: the number of CPUs).

    Raises
    ------
    SourceChangedError
        At the first block whose voxels differ from those the shard was made from.
    """
    recorded = [
        (index, record.input_crc)
        for (level, index), record in finished.items()
        if level == 0 and record.input_crc is not None
    ]
    if not recorded:
        return

    def check(item: tuple[tuple[int, ...], str]) -> tuple[int, ...] | None:
        index, crc = item
        return None if input_digest(read_source(source, _region(level0, index))) == crc else index

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for changed in _first_failures(pool.map(check, recorded)):
            raise SourceChangedError(
                f"{url}: the input changed since this write began: the block of level-0 shard "
                f"{shard_object_key(level0.path, changed)} differs from the one it was made "
                "from, so finishing the write would mix two inputs in one image",
                hint="start again with {overwrite=True}, or resume with the original input",
            )


def _first_failures(results: Iterator[tuple[int, ...] | None]) -> Iterator[tuple[int, ...]]:
    for result in results:
        if result is not None:
            yield result
            return


def _region(level: LevelPlan, index: tuple[int, ...]) -> Region:
    return tuple(
        slice(i * s, min((i + 1) * s, n))
        for i, s, n in zip(index, level.shards, level.shape, strict=True)
    )
