"""The direct chunk reader: the same values as zarr on every layout it takes, errors on damage."""

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

import cellvol
from cellvol._codec._cache import ChunkCache
from cellvol._codec._keys import box_of
from cellvol._codec._layout import ZstdDecoder, chunk_layout
from cellvol.errors import IntegrityError

SHAPE = (37, 45, 51)  # no axis a multiple of the chunks: edge chunks everywhere


def _data(dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=SHAPE).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=SHAPE, dtype=dtype, endpoint=True)


LAYOUTS: dict[str, dict[str, Any]] = {
    "sharded zstd crc": {
        "shards": (16, 32, 32),
        "chunks": (8, 8, 16),
        "compressors": [ZstdCodec(level=3), Crc32cCodec()],
    },
    "sharded raw crc": {
        "shards": (16, 32, 32),
        "chunks": (8, 8, 16),
        "compressors": [Crc32cCodec()],
    },
    "sharded index at start": {
        "serializer": ShardingCodec(
            chunk_shape=(8, 8, 8),
            codecs=[BytesCodec(), GzipCodec()],
            index_codecs=[BytesCodec(), Crc32cCodec()],
            index_location="start",
        ),
        "chunks": (16, 16, 16),
        "compressors": None,
    },
    "sharded index without checksum": {
        "serializer": ShardingCodec(
            chunk_shape=(8, 16, 8),
            codecs=[BytesCodec(), BloscCodec(cname="lz4")],
            index_codecs=[BytesCodec()],
        ),
        "chunks": (16, 32, 32),
        "compressors": None,
    },
    "unsharded zstd": {"chunks": (10, 20, 12), "compressors": [ZstdCodec(level=1)]},
    "unsharded blosc crc": {"chunks": (10, 7, 12), "compressors": [BloscCodec(), Crc32cCodec()]},
    "unsharded raw": {"chunks": (9, 9, 9), "compressors": None},
    "big-endian": {
        "chunks": (10, 20, 12),
        "serializer": BytesCodec(endian="big"),
        "compressors": [GzipCodec()],
    },
    "zarr v2 zstd": {"chunks": (10, 20, 12), "zarr_format": 2},
}


def _store(path: Path, layout: str, dtype: str, fill: Any = 0) -> tuple[np.ndarray, zarr.Array]:
    data = _data(dtype)
    array = zarr.create_array(
        path, shape=SHAPE, dtype=dtype, fill_value=fill, **LAYOUTS[layout], overwrite=True
    )
    array[...] = data
    return data, array


SELECTIONS = [
    np.s_[...],
    np.s_[3],
    np.s_[:, 17],
    np.s_[..., -1],
    np.s_[5:33, 2:44, 7:50],
    np.s_[36, 44, 50],
    np.s_[0:0],
    np.s_[10:5, :, :],
    np.s_[-30:-2, 9],
    np.s_[::-1, 5, 40:3:-4],
    np.s_[30:10:-1, -1:-9:-3],
]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_reads_equal_zarr_on_every_layout(tmp_path: Path, layout: str, dtype: str) -> None:
    data, array = _store(tmp_path / "a.zarr", layout, dtype)
    assert chunk_layout(array) is not None, "this layout should be read directly"
    level = cellvol.open(tmp_path / "a.zarr", cache=ChunkCache(0)).level(0)
    assert level.reader is not None
    for selection in SELECTIONS:
        got = level[selection]
        np.testing.assert_array_equal(got, data[selection])
        assert got.dtype == array.dtype
    for selection in SELECTIONS[:-2]:  # zarr itself refuses negative steps
        np.testing.assert_array_equal(level[selection], array[selection])


def test_missing_chunks_read_as_the_fill_value(tmp_path: Path) -> None:
    for layout in ("sharded zstd crc", "unsharded zstd", "zarr v2 zstd"):
        path = tmp_path / layout.replace(" ", "_")
        array = zarr.create_array(
            path, shape=SHAPE, dtype="int16", fill_value=-7, **LAYOUTS[layout]
        )
        array[0:8, 0:8, 0:16] = 3  # one chunk (one shard) written, the rest never
        level = cellvol.open(path, cache=ChunkCache(0)).level(0)
        np.testing.assert_array_equal(level[...], array[...])
        assert level[20, 20, 20] == -7


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_box_matches_numpy(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    path = tmp_path_factory.getbasetemp() / "hypothesis-box.zarr"
    if not path.exists():
        _store(path, "sharded zstd crc", "uint16")
    expected = _data("uint16")
    level = cellvol.open(path, cache=ChunkCache(2**20)).level(0)
    key = []
    for n in SHAPE:
        if data.draw(st.booleans()):
            key.append(data.draw(st.integers(-n, n - 1)))
        else:
            start = data.draw(st.integers(-n - 3, n + 3) | st.none())
            stop = data.draw(st.integers(-n - 3, n + 3) | st.none())
            step = data.draw(st.sampled_from([None, 1, -1, -2, -7]))
            key.append(slice(start, stop, step))
    np.testing.assert_array_equal(level[tuple(key)], expected[tuple(key)])


def test_other_selections_and_layouts_fall_back_to_zarr(tmp_path: Path) -> None:
    data, _ = _store(tmp_path / "a.zarr", "sharded zstd crc", "uint8")
    level = cellvol.open(tmp_path / "a.zarr").level(0)
    for selection in (np.s_[::2, 3], np.s_[[1, 5, 2]], np.s_[data > 100]):
        assert box_of(selection, SHAPE) is None
        np.testing.assert_array_equal(level[selection], data[selection])
    transposed = zarr.create_array(
        tmp_path / "t.zarr",
        shape=SHAPE,
        dtype="uint8",
        chunks=(8, 8, 8),
        filters=[TransposeCodec(order=(2, 1, 0))],
    )
    transposed[...] = data
    assert chunk_layout(transposed) is None
    vol = cellvol.open(tmp_path / "t.zarr")
    assert vol.level(0).reader is None
    np.testing.assert_array_equal(vol[4:9, 3], data[4:9, 3])


def test_integer_out_of_range_is_an_index_error(tmp_path: Path) -> None:
    _store(tmp_path / "a.zarr", "sharded zstd crc", "uint8")
    level = cellvol.open(tmp_path / "a.zarr").level(0)
    with pytest.raises(IndexError, match="index 37 is out of bounds for axis 0 with size 37"):
        level[37]
    with pytest.raises(IndexError, match="axis 2"):
        level[0, 0, -52]


def _shard_file(path: Path) -> Path:
    return path / "c" / "0" / "0" / "0"


@pytest.mark.parametrize("layout", ["sharded zstd crc", "sharded raw crc"])
def test_a_corrupt_chunk_raises_naming_it(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "a.zarr"
    data, _ = _store(path, layout, "uint8")
    shard = _shard_file(path)
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0xFF  # inside the first stored chunk
    shard.write_bytes(bytes(raw))
    level = cellvol.open(path, cache=ChunkCache(0)).level(0)
    with pytest.raises(IntegrityError, match=r"chunk \(.*\) in c/0/0/0 fails its CRC32C"):
        level[0:16, 0:32, 0:32]
    np.testing.assert_array_equal(level[20:, 33:, :], data[20:, 33:, :])  # other shards read


def test_a_corrupt_or_truncated_index_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    _store(path, "sharded zstd crc", "uint8")
    shard = _shard_file(path)
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:])
    with pytest.raises(IntegrityError, match="index of shard c/0/0/0 fails its CRC32C"):
        cellvol.open(path).level(0)[0]
    shard.write_bytes(raw[:10])
    with pytest.raises(IntegrityError, match="shard c/0/0/0 is truncated: 10 bytes"):
        cellvol.open(path).level(0)[0]


def test_a_chunk_that_does_not_decompress_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    _store(path, "unsharded zstd", "uint8")
    (path / "c" / "1" / "0" / "0").write_bytes(b"not zstd at all")
    with pytest.raises(IntegrityError, match=r"chunk \(1, 0, 0\) in c/1/0/0 cannot be decomp"):
        cellvol.open(path).level(0)[10:20, 0:20, 0:12]


def test_small_chunks_decode_with_a_reused_context_and_large_ones_with_numcodecs(
    tmp_path: Path,
) -> None:
    small = zarr.create_array(
        tmp_path / "small.zarr", shape=(64, 64, 64), chunks=(32, 32, 32), dtype="uint8"
    )
    large = zarr.create_array(
        tmp_path / "large.zarr", shape=(128, 128, 128), chunks=(128, 64, 64), dtype="uint16"
    )
    small_layout, large_layout = chunk_layout(small), chunk_layout(large)
    assert small_layout is not None
    assert large_layout is not None
    assert isinstance(small_layout.decoders[0], ZstdDecoder)
    assert isinstance(large_layout.decoders[0], numcodecs.Zstd)
    data = np.random.default_rng(2).integers(0, 4000, size=(128, 128, 128), dtype="uint16")
    large[...] = data
    np.testing.assert_array_equal(
        cellvol.open(tmp_path / "large.zarr")[3:120, 60, :], data[3:120, 60, :]
    )


def test_a_frame_without_its_size_recorded_decodes(tmp_path: Path) -> None:
    # zstd makes the decompressed size optional in a frame's header; a writer may leave it out.
    path = tmp_path / "a.zarr"
    data, _ = _store(path, "unsharded zstd", "uint8")
    chunk = np.ascontiguousarray(data[0:10, 0:20, 0:12])
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=False)
    (path / "c" / "0" / "0" / "0").write_bytes(compressor.compress(chunk.tobytes()))
    np.testing.assert_array_equal(cellvol.open(path)[0:10, 0:20, 0:12], chunk)


def test_a_frame_larger_than_its_chunk_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    _store(path, "unsharded zstd", "uint8")
    too_big = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(10 * 20 * 12 + 1))
    (path / "c" / "0" / "0" / "0").write_bytes(too_big)
    with pytest.raises(IntegrityError, match=r"chunk \(0, 0, 0\) in c/0/0/0 cannot be decomp"):
        cellvol.open(path, cache=ChunkCache(0))[0:10, 0:20, 0:12]


def test_eight_threads_read_correct_data(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    data, _ = _store(path, "sharded zstd crc", "uint16")
    level = cellvol.open(path, cache=ChunkCache(2**20)).level(0)
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(200):
        start = [int(rng.integers(0, n)) for n in SHAPE]
        stop = [int(rng.integers(s, n + 1)) for s, n in zip(start, SHAPE, strict=True)]
        boxes.append(tuple(slice(a, b) for a, b in zip(start, stop, strict=True)))

    def check(box: tuple[slice, ...]) -> bool:
        return bool(np.array_equal(level[box], data[box]))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, boxes))


def test_repeated_reads_come_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    data, _ = _store(path, "sharded zstd crc", "uint8")
    cache = ChunkCache(2**20)
    level = cellvol.open(path, cache=cache).level(0)
    np.testing.assert_array_equal(level[3], data[3])
    first = cache.stats()
    assert first.hits == 0
    assert first.entries > 0
    np.testing.assert_array_equal(level[4], data[4])  # same chunks: no new entries
    second = cache.stats()
    assert second.hits == first.entries
    assert second.entries == first.entries


class _RecordingCache(ChunkCache):
    def __init__(self) -> None:
        super().__init__(2**24)
        self.values: list[np.ndarray] = []

    def put(self, key: Any, value: np.ndarray) -> None:
        self.values.append(value)
        super().put(key, value)


def _bytes_held(array: np.ndarray) -> int:
    """The size of the buffer that keeps ``array``'s memory alive."""
    holder: Any = array
    while isinstance(holder, np.ndarray) and holder.base is not None:
        holder = holder.base
    if isinstance(holder, memoryview):
        holder = holder.obj
    return memoryview(holder).nbytes


@pytest.mark.parametrize("layout", ["sharded zstd crc", "sharded raw crc", "unsharded raw"])
def test_a_cached_chunk_holds_no_more_than_itself(tmp_path: Path, layout: str) -> None:
    # An uncompressed chunk is read with its neighbours in one request; cached as a view of
    # that request's bytes it would keep them all alive, beyond the cache's budget.
    path = tmp_path / "a.zarr"
    data, _ = _store(path, layout, "uint8")
    cache = _RecordingCache()
    np.testing.assert_array_equal(cellvol.open(path, cache=cache).level(0)[:], data)
    assert len(cache.values) > 1
    assert all(_bytes_held(value) == value.nbytes for value in cache.values)


def test_a_rewritten_image_is_never_served_stale_chunks(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    _store(path, "sharded zstd crc", "uint8")
    cache = ChunkCache(2**20)
    before = cellvol.open(path, cache=cache)[2]
    array = zarr.open_array(path, mode="r+")
    array[...] = 0
    assert before.any()
    assert not cellvol.open(path, cache=cache)[2].any()


def test_read_async_from_another_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    data, _ = _store(path, "sharded zstd crc", "uint8")
    level = cellvol.open(path).level(0)

    async def many() -> list[np.ndarray]:
        return list(await asyncio.gather(*(level.read_async(np.s_[i, 3:40]) for i in range(10))))

    for i, plane in enumerate(asyncio.run(many())):
        np.testing.assert_array_equal(plane, data[i, 3:40])
    stepped = asyncio.run(level.read_async(np.s_[::3]))  # falls back to zarr in a thread
    np.testing.assert_array_equal(stepped, data[::3])
