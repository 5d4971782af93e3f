"""Pyramid writes and reads on S3 through faults: survived, never hidden, byte for byte.

The fault proxy (``fault_proxy``) stands between cellvol and the session's moto server on
127.0.0.1. Every comparison lists both buckets straight from moto and compares every object's
bytes with those of the same write made without faults.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support import S3Server

import cellvol
from cellvol.errors import StoreUnavailableError
from cellvol.synthetic import SyntheticVolume

pytestmark = pytest.mark.s3

SHAPE = (64, 1024, 1024)  # 64 MiB of uint8
LAYOUT = {"chunks": (64, 64, 64), "shards": (64, 256, 256)}
IMAGE = "img.ome.zarr"


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return np.asarray(SyntheticVolume(SHAPE, "uint8", seed=0)[:])


@pytest.fixture(scope="module")
def reference(s3_server: S3Server, source: np.ndarray) -> Iterator[dict[str, bytes]]:
    """Every object of the fault-free write (straight to moto), by key under the image."""
    bucket = _new_bucket(s3_server)
    cellvol.write_pyramid(
        source, f"s3://{bucket}/{IMAGE}", 1.0, storage_options=s3_server.storage_options(), **LAYOUT
    )
    yield s3_server.objects(bucket, prefix=f"{IMAGE}/")
    _drop_bucket(s3_server, bucket)


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    name = _new_bucket(s3_server)
    yield name
    _drop_bucket(s3_server, name)


@pytest.mark.parametrize(("rate", "seed"), [(0.05, 11), (0.2, 12)])
def test_a_pyramid_written_and_read_through_faults_is_the_fault_free_one(
    fault_proxy: Any,
    s3_server: S3Server,
    bucket: str,
    source: np.ndarray,
    reference: dict[str, bytes],
    rate: float,
    seed: int,
) -> None:
    options = s3_server.storage_options(endpoint_url=fault_proxy.url)
    url = f"s3://{bucket}/{IMAGE}"
    fault_proxy.configure(rate=rate, seed=seed)
    cellvol.write_pyramid(source, url, 1.0, storage_options=options, **LAYOUT)
    written = fault_proxy.take_counts()

    # Read back whole, every level, through the same faults.
    image = cellvol.open(url, storage_options=options)
    assert np.array_equal(image[:], source)
    clean = cellvol.open(f"s3://{bucket}/{IMAGE}", storage_options=s3_server.storage_options())
    for index in range(1, len(image.levels)):
        assert np.array_equal(image.level(index)[:], clean.level(index)[:])
    read = fault_proxy.take_counts()

    fault_proxy.configure(rate=0.0)
    stored = s3_server.objects(bucket, prefix=f"{IMAGE}/")
    assert sorted(stored) == sorted(reference)
    assert [key for key in reference if stored[key] != reference[key]] == []
    # Faults were met, and survived: at 20 %, every kind of them.
    met = {kind for kind in set(written) | set(read) if kind != "requests"}
    assert met
    if rate >= 0.2:
        assert met == {"500", "503", "reset", "reset-body", "short-body", "lost-answer", "delay"}


def test_a_shard_that_always_fails_stops_the_write_naming_it_and_resume_finishes(
    fault_proxy: Any,
    s3_server: S3Server,
    bucket: str,
    source: np.ndarray,
    reference: dict[str, bytes],
) -> None:
    doomed = f"{IMAGE}/0/c/0/1/2"
    assert doomed.removeprefix(f"{IMAGE}/") in reference  # a real shard of level 0
    options = s3_server.storage_options(
        endpoint_url=fault_proxy.url, retry={"attempts": 3, "first_delay": 0.01}
    )
    url = f"s3://{bucket}/{IMAGE}"
    fault_proxy.configure(fail_keys=f"/{bucket}/{doomed}$")
    with pytest.raises(
        StoreUnavailableError, match=f"PutObject of s3://{bucket}/{doomed} "
    ) as stop:
        cellvol.write_pyramid(source, url, 1.0, storage_options=options, **LAYOUT)
    assert "resume=True" in str(stop.value)
    assert doomed.removeprefix(f"{IMAGE}/") not in s3_server.objects(bucket, prefix=f"{IMAGE}/")

    fault_proxy.configure(fail_keys=None)  # the store recovers
    result = cellvol.write_pyramid(source, url, 1.0, storage_options=options, **LAYOUT)
    assert result.shards_reused > 0  # resumed, not started again
    stored = s3_server.objects(bucket, prefix=f"{IMAGE}/")
    assert sorted(stored) == sorted(reference)
    assert [key for key in reference if stored[key] != reference[key]] == []


def test_bodies_cut_short_never_read_as_data(
    fault_proxy: Any, s3_server: S3Server, bucket: str, source: np.ndarray
) -> None:
    url = f"s3://{bucket}/{IMAGE}"
    cellvol.write_pyramid(source, url, 1.0, storage_options=s3_server.storage_options(), **LAYOUT)
    fault_proxy.configure(rate=0.3, seed=13, kinds=("short-body", "reset-body"))
    image = cellvol.open(
        url, storage_options=s3_server.storage_options(endpoint_url=fault_proxy.url)
    )
    assert np.array_equal(image[:], source)  # every voxel
    for z in (0, 31, 63):
        assert np.array_equal(image[z], source[z])  # planes: ranged reads of a few chunks
    counts = fault_proxy.take_counts()
    assert counts.get("short-body", 0) > 0
    assert counts.get("reset-body", 0) > 0


def _new_bucket(server: S3Server) -> str:
    name = f"cellvol-faults-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def _drop_bucket(server: S3Server, bucket: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)
