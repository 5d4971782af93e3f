"""``verify(..., zarr_checksum=True)``: DANDI's zarr checksum, from the scan's single read."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from support import S3Bucket
from typer.testing import CliRunner
from zarr.abc.store import Store
from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import S3ClientOptions, yield_files_local, yield_files_s3

import cellvol
from cellvol._store import list_keys, open_store, read_bytes, write_bytes
from cellvol.cli import app
from cellvol.integrity import _sources


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("zarr-checksum") / "image.ome.zarr"
    data = np.random.default_rng(3).integers(0, 4000, (40, 50, 36), dtype=np.uint16)
    cellvol.write_pyramid(data, dest, 1.0, chunks=(16, 16, 16), shards=(32, 32, 32), n_levels=2)
    cellvol.write_labels(dest, (data // 1000).astype(np.uint8), "cells")
    return dest


def _dandi(directory: Path) -> str:
    return compute_zarr_checksum(yield_files_local(directory)).digest


def test_equals_the_packages_own_computation(image: Path) -> None:
    report = cellvol.verify(image, zarr_checksum=True)
    assert report.intact, report.summary()
    assert report.zarr_checksum == _dandi(image)
    count = sum(1 for p in image.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in image.rglob("*") if p.is_file())
    assert report.zarr_checksum.endswith(f"-{count}--{size}")  # every object, records too
    assert cellvol.verify(image).zarr_checksum is None  # only when asked for


def test_equal_for_the_image_its_archive_and_its_unpacked_copy(image: Path, tmp_path: Path) -> None:
    packed = cellvol.pack(image, tmp_path / "image.ozx")
    unpacked = cellvol.unpack(packed, tmp_path / "copy.ome.zarr")
    digests = {
        where: cellvol.verify(where, zarr_checksum=True).zarr_checksum
        for where in (image, packed, unpacked)
    }
    assert len(set(digests.values())) == 1, digests
    assert digests[unpacked] == _dandi(unpacked)


@pytest.mark.parametrize(
    "key", ["0/c/1/0/0", "_cellvol/job.json", "labels/cells/zarr.json", "labels/cells/1/c/0/0/0"]
)
def test_changes_when_one_byte_changes(image: Path, tmp_path: Path, key: str) -> None:
    copy = tmp_path / "image.ome.zarr"
    shutil.copytree(image, copy)
    before = cellvol.verify(copy, zarr_checksum=True).zarr_checksum
    data = bytearray((copy / key).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / key).write_bytes(bytes(data))
    after = cellvol.verify(copy, zarr_checksum=True)
    assert after.zarr_checksum != before
    assert after.zarr_checksum == _dandi(copy)
    # Same count and size: only the MD5 part tells the change.
    assert after.zarr_checksum.split("-", 1)[1] == before.split("-", 1)[1]  # type: ignore[union-attr]


def test_every_object_is_read_once(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: Counter[str] = Counter()
    one, many = _sources.read_bytes, _sources.read_objects

    def read_bytes_counted(store: Store, key: str) -> bytes | None:
        reads[key] += 1
        return one(store, key)

    def read_objects_counted(store: Store, keys: Sequence[str]) -> list[bytes | None]:
        reads.update(keys)
        return many(store, keys)

    monkeypatch.setattr(_sources, "read_bytes", read_bytes_counted)
    monkeypatch.setattr(_sources, "read_objects", read_objects_counted)
    cellvol.verify(image, zarr_checksum=True, workers=2)
    stored = {str(p.relative_to(image)) for p in image.rglob("*") if p.is_file()}
    assert set(reads) == stored
    assert {k: n for k, n in reads.items() if n != 1} == {}


def test_not_computed_over_http_and_said_so(
    image: Path, http_server: Callable[[Path], str]
) -> None:
    report = cellvol.verify(f"{http_server(image.parent)}/{image.name}", zarr_checksum=True)
    assert report.intact, report.summary()
    assert report.zarr_checksum is None
    assert any(gap.startswith("zarr checksum:") for gap in report.unchecked)


@pytest.mark.s3
def test_on_s3_equals_dandis_computation_from_etags(image: Path, s3_bucket: S3Bucket) -> None:
    url = s3_bucket.url("image.ome.zarr")
    store = open_store(url, mode="w", storage_options=s3_bucket.storage_options)
    local = open_store(image)
    for key in list_keys(local):
        write_bytes(store, key, read_bytes(local, key) or b"")
    report = cellvol.verify(url, s3_bucket.storage_options, zarr_checksum=True)
    assert report.zarr_checksum == _dandi(image)
    options = S3ClientOptions(
        endpoint_url=s3_bucket.storage_options["endpoint_url"],
        aws_access_key_id=s3_bucket.storage_options["key"],
        aws_secret_access_key=s3_bucket.storage_options["secret"],
    )
    # DANDI takes each object's MD5 from its S3 ETag, which for a single-part upload it is.
    dandi = compute_zarr_checksum(yield_files_s3(s3_bucket.name, "image.ome.zarr", options))
    assert report.zarr_checksum == dandi.digest


def test_cli_prints_it(image: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(image), "--zarr-checksum"])
    assert result.exit_code == 0, result.output
    assert f"zarr checksum: {_dandi(image)}" in result.output
    result = runner.invoke(app, ["verify", str(image), "--zarr-checksum", "--json"])
    assert json.loads(result.output)["zarr_checksum"] == _dandi(image)
    result = runner.invoke(app, ["verify", str(image), "--json"])
    assert json.loads(result.output)["zarr_checksum"] is None
