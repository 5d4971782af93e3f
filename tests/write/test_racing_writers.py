"""Two writers started together on one destination: one wins, the other is refused.

Two long-lived processes (spawned, like two ``cellvol convert`` runs) meet at a barrier before
each trial and write different data with different layouts to the same destination. Never may
both succeed, and the image left must hold exactly the winner's voxels and pass its checks.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol.errors import WriteConflictError

TRIALS = 20
SHAPE = (32, 64, 64)
# Different layouts: a mixed store would not even decode.
LAYOUTS = ({"chunks": (16, 16, 16)}, {"chunks": (32, 32, 32), "compression_level": 1})


def _data(writer: int) -> np.ndarray:
    return np.random.default_rng(writer).integers(0, 255, SHAPE, dtype=np.uint8)


def _writer(writer: int, urls: list[str], options: dict[str, Any], barrier, results) -> None:  # type: ignore[no-untyped-def]
    data = _data(writer)
    for url in urls:
        barrier.wait(120)
        try:
            cellvol.write_pyramid(
                data, url, 4.0, n_levels=2, storage_options=options, **LAYOUTS[writer]
            )
            results.put((url, writer, "ok"))
        except WriteConflictError as exc:
            results.put((url, writer, f"refused: {exc}"))
        except Exception as exc:  # reported, so the test fails with it rather than hangs
            results.put((url, writer, f"failed: {type(exc).__name__}: {exc}"))


def _race(urls: list[str], options: dict[str, Any]) -> dict[str, dict[int, str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    writers = [
        context.Process(target=_writer, args=(w, urls, options, barrier, results)) for w in (0, 1)
    ]
    for process in writers:
        process.start()
    outcomes: dict[str, dict[int, str]] = {url: {} for url in urls}
    for _ in range(2 * len(urls)):
        url, writer, outcome = results.get(timeout=300)
        outcomes[url][writer] = outcome
    for process in writers:
        process.join(60)
    return outcomes


def _check(outcomes: dict[str, dict[int, str]], options: dict[str, Any]) -> None:
    for url, by_writer in outcomes.items():
        winners = [w for w, outcome in by_writer.items() if outcome == "ok"]
        assert len(winners) == 1, f"{url}: {by_writer}"
        loser = 1 - winners[0]
        assert by_writer[loser].startswith("refused: "), by_writer[loser]
        volume = cellvol.open(url, storage_options=options)
        np.testing.assert_array_equal(volume.level(0)[:], _data(winners[0]))
        assert volume.levels[0].chunks == LAYOUTS[winners[0]]["chunks"]


def test_racing_writers_on_local_disk(tmp_path) -> None:
    urls = [str(tmp_path / f"race{i}.ome.zarr") for i in range(TRIALS)]
    outcomes = _race(urls, {})
    _check(outcomes, {})


def test_racing_writers_on_s3(s3_bucket) -> None:
    urls = [s3_bucket.url(f"race{i}.ome.zarr") for i in range(TRIALS)]
    outcomes = _race(urls, s3_bucket.storage_options)
    _check(outcomes, s3_bucket.storage_options)


def test_overwrite_is_refused_while_another_writer_holds_the_lease(tmp_path) -> None:
    from cellvol._store import list_keys, open_store
    from cellvol._store._lease import take_lease
    from cellvol.ome._manifest import LEASE_KEY

    url = str(tmp_path / "held.ome.zarr")
    cellvol.write_pyramid(_data(0), url, 4.0, n_levels=2)
    store = open_store(url, mode="a")
    before = list_keys(store, "")
    with (
        take_lease(store, url, LEASE_KEY),
        pytest.raises(WriteConflictError, match="being written by another writer"),
    ):
        cellvol.write_pyramid(_data(1), url, 4.0, n_levels=2, overwrite=True)
    assert list_keys(store, "") == before
    np.testing.assert_array_equal(cellvol.open(url).level(0)[:], _data(0))


def test_a_refused_foreign_destination_keeps_no_trace_of_cellvol(tmp_path) -> None:
    from cellvol.errors import WriteConflictError as Refused

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not an image")
    with pytest.raises(Refused, match="holds no cellvol write"):
        cellvol.write_pyramid(_data(0), foreign, 4.0, n_levels=1)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_adding_labels_holds_the_images_lease(tmp_path) -> None:
    from cellvol._store import open_store
    from cellvol._store._lease import take_lease
    from cellvol.ome._manifest import LEASE_KEY

    url = str(tmp_path / "img.ome.zarr")
    cellvol.write_pyramid(_data(0), url, 4.0, n_levels=1)
    labels = (_data(1) % 3).astype(np.uint8)
    with (
        take_lease(open_store(url, mode="a"), url, LEASE_KEY),
        pytest.raises(WriteConflictError, match="being written by another writer"),
    ):
        cellvol.write_labels(url, labels, "cells")
    cellvol.write_labels(url, labels, "cells")  # free again
    assert list(cellvol.open(url).labels) == ["cells"]
