"""No false alarms: intact images verify clean on S3 and as ``.ozx`` (local and over HTTP).

Five small images of varied dtypes and odd shapes, some with label images; each is written
once and then verified where it lies in several stores, so the runs differ in the store and
not in the data. Every run must find the image intact, with nothing left unchecked, and the
zarr checksum must be the same wherever the image lies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import S3Bucket

import cellvol
from cellvol._store import list_keys, open_store, read_bytes, write_bytes

IMAGES: dict[str, tuple[tuple[int, int, int], str, bool]] = {
    "uint8 with labels": ((37, 41, 29), "uint8", True),
    "uint16": ((20, 33, 50), "uint16", False),
    "float32 with labels": ((17, 23, 31), "float32", True),
    "uint16 thin with labels": ((3, 70, 13), "uint16", True),
    "float32 flat": ((50, 7, 66), "float32", False),
}
RUNS_PER_STORE = 2


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, str]]:
    """Each image: its directory, its .ozx, and its zarr checksum."""
    made = {}
    rng = np.random.default_rng(2024)
    for number, (name, (shape, dtype, labels)) in enumerate(IMAGES.items()):
        root = tmp_path_factory.mktemp(f"intact{number}") / "image.ome.zarr"
        if dtype == "float32":
            data: np.ndarray[Any, Any] = rng.normal(size=shape).astype(np.float32)
        else:
            data = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
        cellvol.write_pyramid(
            data, root, (2.0, 1.0, 1.0), chunks=(8, 8, 8), shards=(16, 16, 16), n_levels=2
        )
        if labels:
            cellvol.write_labels(root, (np.arange(data.size) % 7).reshape(shape), "cells")
        digest = cellvol.verify(root, zarr_checksum=True).zarr_checksum
        assert digest is not None
        made[name] = (root, cellvol.pack(root, root.with_suffix("").with_suffix(".ozx")), digest)
    return made


def _assert_clean(report: cellvol.VerifyReport, labels: bool, digest: str | None) -> None:
    assert report.problems == [], report.summary()
    assert report.intact
    assert report.unchecked == []
    assert report.images == (["", "labels/cells"] if labels else [""])
    assert report.chunks > 0
    if digest is not None:
        assert report.zarr_checksum == digest


@pytest.mark.s3
@pytest.mark.parametrize("name", list(IMAGES))
def test_intact_on_s3_directory_and_archive(
    images: dict[str, tuple[Path, Path, str]], s3_bucket: S3Bucket, name: str
) -> None:
    root, packed, digest = images[name]
    options = s3_bucket.storage_options
    store = open_store(s3_bucket.url("image.ome.zarr"), mode="w", storage_options=options)
    local = open_store(root)
    for key in list_keys(local):
        write_bytes(store, key, read_bytes(local, key) or b"")
    bucket = open_store(s3_bucket.url(), mode="a", storage_options=options)
    write_bytes(bucket, "image.ozx", packed.read_bytes())
    labels = IMAGES[name][2]
    for where in ("image.ome.zarr", "image.ozx"):
        for run in range(RUNS_PER_STORE):
            asked = run == 0
            report = cellvol.verify(s3_bucket.url(where), options, zarr_checksum=asked, workers=2)
            _assert_clean(report, labels, digest if asked else None)


@pytest.mark.parametrize("name", list(IMAGES))
def test_intact_as_archive_locally_and_over_http(
    images: dict[str, tuple[Path, Path, str]], http_server: Callable[[Path], str], name: str
) -> None:
    _, packed, digest = images[name]
    labels = IMAGES[name][2]
    url = f"{http_server(packed.parent)}/{packed.name}"
    for where in (packed, url):
        for run in range(RUNS_PER_STORE):
            asked = run == 0
            report = cellvol.verify(where, zarr_checksum=asked, workers=2)
            _assert_clean(report, labels, digest if asked else None)
