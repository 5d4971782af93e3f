"""cellvol's shard encoder writes exactly the bytes zarr writes, and every reader decodes them."""

from pathlib import Path

import numpy as np
import pytest
import zarr

from cellvol._codec._shard import copy_rows, encode_shard, sharding_codecs


@pytest.mark.parametrize("level", [3, None], ids=["zstd", "uncompressed"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "uint64"])
@pytest.mark.parametrize(
    ("shape", "chunks", "shards"),
    [
        ((32, 32, 32), (16, 16, 16), (32, 32, 32)),  # one full shard
        ((40, 33, 17), (16, 16, 16), (32, 32, 32)),  # edge shards, partial and absent chunks
        ((5, 70, 9), (8, 16, 4), (8, 64, 8)),
    ],
)
def test_bytes_equal_zarrs_own_encoding(
    tmp_path: Path, dtype: str, shape, chunks, shards, level: int | None
) -> None:
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 200).astype(dtype)
    array = zarr.create_array(
        tmp_path / "a.zarr",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        fill_value=0,
        config={"write_empty_chunks": True},
        **sharding_codecs(level),
    )
    array[:] = data
    grid = [-(-n // s) for n, s in zip(shape, shards, strict=True)]
    for index in np.ndindex(*grid):
        region = tuple(
            slice(i * s, min((i + 1) * s, n)) for i, s, n in zip(index, shards, shape, strict=True)
        )
        key = tmp_path / "a.zarr" / "c" / Path(*map(str, index))
        assert b"".join(encode_shard(data[region], chunks, shards, level)) == key.read_bytes(), (
            index
        )


def test_tensorstore_reads_encoded_shards(tmp_path: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    shape, chunks, shards = (40, 33, 17), (16, 16, 16), (32, 32, 32)
    data = np.random.default_rng(1).integers(0, 60000, size=shape, dtype=np.uint16)
    zarr.create_array(
        tmp_path / "b.zarr",
        shape=shape,
        dtype="uint16",
        chunks=chunks,
        shards=shards,
        fill_value=0,
        **sharding_codecs(5),
    )
    grid = [-(-n // s) for n, s in zip(shape, shards, strict=True)]
    for index in np.ndindex(*grid):
        region = tuple(
            slice(i * s, min((i + 1) * s, n)) for i, s, n in zip(index, shards, shape, strict=True)
        )
        key = tmp_path / "b.zarr" / "c" / Path(*map(str, index))
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(b"".join(encode_shard(data[region], chunks, shards, 5)))
    store = ts.open(
        {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "b.zarr")}}
    ).result()
    np.testing.assert_array_equal(store.read().result(), data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "b.zarr")[:], data)


@pytest.mark.parametrize("source_dtype", ["uint8", "<u2", ">u2", "float32"])
@pytest.mark.parametrize(
    "view",
    [
        (slice(1, 9), slice(2, 7), slice(3, 11)),  # rows contiguous, block strided
        (slice(1, 9), slice(2, 7), slice(3, 4)),  # rows of one element
        (slice(1, 9), slice(2, 7), slice(3, 19, 2)),  # rows not contiguous: plain copy
    ],
)
def test_copy_rows_copies_what_numpy_copies(source_dtype: str, view) -> None:
    whole = (np.random.default_rng(1).random((10, 9, 20)) * 250).astype(source_dtype)
    source = whole[view]
    swapped = np.dtype(source_dtype).newbyteorder("S")
    for target_dtype in (np.dtype(source_dtype), swapped):  # another byte order is converted
        padded = np.full((9, 6, 12), 7, dtype=target_dtype)
        target = padded[: source.shape[0], : source.shape[1], : source.shape[2]]
        copy_rows(target, source)
        np.testing.assert_array_equal(target, source.astype(target_dtype))
        assert (padded[source.shape[0] :] == 7).all()
        assert (padded[:, :, source.shape[2] :] == 7).all()


def test_a_big_endian_shard_is_stored_little_endian() -> None:
    data = np.arange(2 * 4 * 6, dtype=">u2").reshape(2, 4, 6)
    parts = encode_shard(data, (2, 4, 6), (2, 4, 6), None)
    assert parts[0] == data.astype("<u2").tobytes()
