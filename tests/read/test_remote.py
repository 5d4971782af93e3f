"""Write and read pyramids on S3 (a real moto server on 127.0.0.1) and over HTTP (loopback)."""

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cellvol
from cellvol._store import delete_prefix, open_store
from cellvol.errors import NotOMEZarrError, ReadOnlyStoreError, StoreNotFoundError


@pytest.fixture(scope="module")
def volume_data() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 255, size=(33, 47, 61), dtype=np.uint8)


@pytest.mark.s3
def test_s3_round_trip(s3_bucket, volume_data: np.ndarray, tmp_path: Path) -> None:
    url = s3_bucket.url("deposition", "tomo.ome.zarr")
    result = cellvol.write_pyramid(
        volume_data,
        url,
        (2, 1, 1),
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
        n_levels=3,
        storage_options=s3_bucket.storage_options,
    )
    vol = cellvol.open(url, storage_options=s3_bucket.storage_options)
    assert vol.ome_version == "0.5"
    assert vol.voxel_size == cellvol.VoxelSize(2, 1, 1)
    np.testing.assert_array_equal(vol[:], volume_data)
    # The same write locally gives the same levels: S3 changes where bytes go, not what they are.
    cellvol.write_pyramid(
        volume_data,
        tmp_path / "local.zarr",
        (2, 1, 1),
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
        n_levels=len(result.plan),
    )
    local = cellvol.open(tmp_path / "local.zarr")
    for remote_level, local_level in zip(vol.levels, local.levels, strict=True):
        np.testing.assert_array_equal(remote_level[:], local_level[:])
    # A shard deleted from the bucket is an error, not a block of zeros.
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    delete_prefix(store, "0/c/0/0/0")
    damaged = cellvol.open(url, storage_options=s3_bucket.storage_options)
    with pytest.raises(cellvol.IntegrityError, match=r"shard 0/c/0/0/0 is listed"):
        damaged[0:4, 0:4, 0:4]


@pytest.mark.s3
def test_s3_open_reads_few_documents_at_once(
    s3_bucket, volume_data: np.ndarray, s3_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    url = s3_bucket.url("few", "tomo.ome.zarr")
    options = s3_bucket.storage_options
    cellvol.write_pyramid(
        volume_data, url, 1.0, chunks=(16,) * 3, n_levels=3, storage_options=options
    )
    s3_calls.clear()
    vol = cellvol.open(url, storage_options=options)
    # One listing (does anything exist there?), the image's zarr.json, then the three levels'
    # documents and the manifest together; no HEAD before a GET, no v2 names probed.
    operations = [name for name, _ in s3_calls]
    assert operations == ["ListObjectsV2"] + ["GetObject"] * 5
    keys = [parameters["Key"].removeprefix("few/tomo.ome.zarr/") for _, parameters in s3_calls[1:]]
    assert keys[0] == "zarr.json"
    levels = ["0/zarr.json", "1/zarr.json", "2/zarr.json"]
    assert sorted(keys[1:]) == [*levels, "_cellvol/manifest.json"]
    assert vol.level(0).presence is not None  # the manifest was read and is used
    np.testing.assert_array_equal(vol[:], volume_data)


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_error(s3_server) -> None:
    with pytest.raises(StoreNotFoundError, match="no-such-bucket"):
        cellvol.open("s3://no-such-bucket/x.zarr", storage_options=s3_server.storage_options())
    with pytest.raises(StoreNotFoundError, match="no-such-bucket"):
        cellvol.write_pyramid(
            np.zeros((4, 4, 4), np.uint8),
            "s3://no-such-bucket/x.zarr",
            1.0,
            storage_options=s3_server.storage_options(),
        )


@pytest.mark.s3
def test_s3_prefix_without_image(s3_bucket) -> None:
    with pytest.raises((StoreNotFoundError, NotOMEZarrError)):
        cellvol.open(s3_bucket.url("nothing-here.zarr"), storage_options=s3_bucket.storage_options)


def test_http_read(tmp_path: Path, http_server, volume_data: np.ndarray) -> None:
    cellvol.write_pyramid(
        volume_data, tmp_path / "web.ome.zarr", 1.0, chunks=(16, 16, 16), n_levels=2
    )
    base = http_server(tmp_path)
    vol = cellvol.open(f"{base}/web.ome.zarr")
    np.testing.assert_array_equal(vol[:], volume_data)
    np.testing.assert_array_equal(
        vol.level(1)[:], cellvol.open(tmp_path / "web.ome.zarr").level(1)[:]
    )


def test_http_is_read_only(tmp_path: Path, http_server) -> None:
    base = http_server(tmp_path)
    with pytest.raises(ReadOnlyStoreError):
        cellvol.write_pyramid(np.zeros((4, 4, 4), np.uint8), f"{base}/new.zarr", 1.0)


@pytest.mark.s3
def test_s3_reads_directly_and_catches_corruption(
    s3_server, s3_bucket, volume_data: np.ndarray
) -> None:
    url = s3_bucket.url("corrupt.ome.zarr")
    options = s3_bucket.storage_options
    cellvol.write_pyramid(
        volume_data,
        url,
        1.0,
        chunks=(16, 16, 16),
        shards=(32, 32, 32),
        n_levels=1,
        storage_options=options,
    )
    vol = cellvol.open(url, storage_options=options, cache=cellvol.ChunkCache(0))
    assert vol.level(0).reader is not None
    np.testing.assert_array_equal(vol[5, 3:40], volume_data[5, 3:40])
    np.testing.assert_array_equal(vol[::-1, 2, 7:9], volume_data[::-1, 2, 7:9])

    async def planes() -> list[np.ndarray]:
        return list(await asyncio.gather(*(vol.level(0).read_async(i) for i in range(0, 33, 4))))

    for i, plane in zip(range(0, 33, 4), asyncio.run(planes()), strict=True):
        np.testing.assert_array_equal(plane, volume_data[i])
    client = s3_server.client()
    key = "corrupt.ome.zarr/0/c/0/0/0"
    body = bytearray(client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read())
    body[10] ^= 0xFF
    client.put_object(Bucket=s3_bucket.name, Key=key, Body=bytes(body))
    damaged = cellvol.open(url, storage_options=options, cache=cellvol.ChunkCache(0))
    with pytest.raises(cellvol.IntegrityError, match=r"in 0/c/0/0/0 fails its CRC32C"):
        damaged[0:16, 0:16, 0:16]


def _count_requests(monkeypatch: pytest.MonkeyPatch, reader: object) -> list[tuple[str, object]]:
    """Record every (key, byte range) the reader asks the store for."""
    requests: list[tuple[str, object]] = []
    fetch = reader._get  # type: ignore[attr-defined]

    async def counted(key: str, byte_range: object) -> object:
        requests.append((key, byte_range))
        return await fetch(key, byte_range)

    monkeypatch.setattr(reader, "_get", counted)
    return requests


def _noise_image(tmp_path: Path) -> np.ndarray:
    # 512 chunks of 8³ in one 64³ shard, incompressible: a z plane needs 64 chunks that Morton
    # order scatters across the shard.
    data = np.random.default_rng(5).integers(0, 255, size=(64, 64, 64), dtype=np.uint8)
    cellvol.write_pyramid(
        data, tmp_path / "noise.ome.zarr", 1.0, chunks=(8, 8, 8), shards=(64, 64, 64), n_levels=1
    )
    return data


def test_remote_reads_fetch_nearby_chunks_in_one_request(
    tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _noise_image(tmp_path)
    vol = cellvol.open(f"{http_server(tmp_path)}/noise.ome.zarr", cache=cellvol.ChunkCache(0))
    requests = _count_requests(monkeypatch, vol.level(0).reader)
    np.testing.assert_array_equal(vol[37], data[37])
    # The shard's index, then its 64 scattered chunks: all within 1 MiB of each other.
    assert len(requests) == 2


def test_a_merged_request_stays_within_its_cap(
    tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellvol._codec import _reader as chunkread

    data = _noise_image(tmp_path)
    cap = 32 * 1024
    monkeypatch.setattr(chunkread, "_MAX_REQUEST_BYTES", cap)
    vol = cellvol.open(f"{http_server(tmp_path)}/noise.ome.zarr", cache=cellvol.ChunkCache(0))
    requests = _count_requests(monkeypatch, vol.level(0).reader)
    np.testing.assert_array_equal(vol[:], data)
    ranges = [r for _, r in requests[1:]]  # after the index
    assert len(ranges) >= data.nbytes // cap
    assert all(r.end - r.start <= cap for r in ranges)  # type: ignore[attr-defined]
