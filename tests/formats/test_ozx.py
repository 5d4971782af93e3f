"""Zipped OME-Zarr (.ozx, RFC-9): pack, read where it lies (locally and over HTTP), unpack."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import S3Bucket

import cellvol
from cellvol._store import list_keys, open_store, parse_location, read_bytes, write_bytes
from cellvol.errors import (
    InvalidInputError,
    ReadOnlyStoreError,
    SourceChangedError,
    StoreNotFoundError,
    WriteConflictError,
)
from cellvol.formats import _ozx, _zip_entries
from cellvol.formats._zip_entries import EntryWriter

_ZIP64_EXTRA = 0x0001


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ozx") / "img.ome.zarr"
    data = np.arange(32 * 48 * 40, dtype=np.uint16).reshape(32, 48, 40)
    cellvol.write_pyramid(
        data, root, (2, 1, 1), chunks=(8, 16, 16), shards=(16, 32, 32), n_levels=3
    )
    return root


@pytest.fixture(scope="module")
def packed(image: Path) -> Path:
    return cellvol.pack(image, image.parent / "img.ozx")


def _assert_same_image(opened: cellvol.Volume, source: cellvol.Volume) -> None:
    assert opened.attributes == source.attributes
    assert len(opened.levels) == len(source.levels) > 1
    for got, expected in zip(opened.levels, source.levels, strict=True):
        assert got.path == expected.path
        np.testing.assert_array_equal(got[:], expected[:])


def test_pack_then_open_gives_the_same_image(image: Path, packed: Path) -> None:
    _assert_same_image(cellvol.open(packed), cellvol.open(image))
    assert parse_location(packed).name == "img"


def test_entries_are_ordered_stored_and_zip64(image: Path, packed: Path) -> None:
    with zipfile.ZipFile(packed) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        comment = json.loads(archive.comment)
        raw = packed.read_bytes()
    source = list_keys(open_store(image))
    assert sorted(names) == sorted(k for k in source if not k.endswith(".partial"))
    documents = [n for n in names if n.rpartition("/")[2] == "zarr.json"]
    assert names[0] == "zarr.json"
    assert names[: len(documents)] == documents  # every zarr.json before any data
    depths = [d.count("/") for d in documents]
    assert depths == sorted(depths)  # breadth-first
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    assert all(info.compress_size == info.file_size for info in infos)
    for info in infos:
        # Each local header carries a ZIP64 extra field (header id 1), and needs version 4.5.
        assert info.extract_version >= 45
        start = info.header_offset
        name_length, extra_length = struct.unpack("<HH", raw[start + 26 : start + 30])
        extra = raw[start + 30 + name_length : start + 30 + name_length + extra_length]
        assert struct.unpack("<H", extra[:2])[0] == _ZIP64_EXTRA
    assert comment == {
        "ome": {"version": "0.5", "zipFile": {"centralDirectory": {"jsonFirst": True}}}
    }


def test_entry_order_is_breadth_first() -> None:
    keys = ["b/c/zarr.json", "a/c/0", "zarr.json", "a/zarr.json", "_cellvol/x.json", "b/zarr.json"]
    assert _ozx.entry_order(keys) == [
        "zarr.json",
        "a/zarr.json",
        "b/zarr.json",
        "b/c/zarr.json",
        "_cellvol/x.json",
        "a/c/0",
    ]


def test_unpack_gives_back_every_object_byte_for_byte(
    image: Path, packed: Path, tmp_path: Path
) -> None:
    out = cellvol.unpack(packed, tmp_path / "back.ome.zarr")
    source, copy = open_store(image), open_store(out)
    keys = [k for k in list_keys(source) if not k.endswith(".partial")]
    assert list_keys(copy) == keys
    for key in keys:
        assert read_bytes(copy, key) == read_bytes(source, key), key
    assert [p.name for p in tmp_path.iterdir()] == ["back.ome.zarr"]  # no temporary left
    with pytest.raises(WriteConflictError, match=r"back\.ome\.zarr exists"):
        cellvol.unpack(packed, out)
    cellvol.unpack(packed, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["back.ome.zarr"]


def test_an_interrupted_pack_leaves_no_archive(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = 0
    real = EntryWriter.add_file

    def failing(self: EntryWriter, *args: Any) -> None:
        nonlocal copies
        copies += 1
        if copies == 5:
            raise SourceChangedError("interrupted")
        real(self, *args)

    monkeypatch.setattr(EntryWriter, "add_file", failing)
    with pytest.raises(SourceChangedError):
        cellvol.pack(image, tmp_path / "x.ozx")
    assert list(tmp_path.iterdir()) == []
    _assert_nothing_left_open(image)


def test_an_interrupted_unpack_leaves_no_directory(
    packed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_ozx, "_copy_out", failing)
    with pytest.raises(KeyboardInterrupt):
        cellvol.unpack(packed, tmp_path / "x.ome.zarr")
    assert list(tmp_path.iterdir()) == []


def test_pieces_bound_what_is_held(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ozx, "PIECE_BYTES", 1000)
    out = cellvol.pack(image, tmp_path / "small-pieces.ozx")
    _assert_same_image(cellvol.open(out), cellvol.open(image))


def test_archives_are_read_only_and_pack_is_named(packed: Path) -> None:
    with pytest.raises(ReadOnlyStoreError, match=r"read-only") as caught:
        open_store(packed, mode="a")
    assert caught.value.hint is not None
    assert "pack" in caught.value.hint
    with pytest.raises(ReadOnlyStoreError):
        cellvol.write_pyramid(np.zeros((4, 4, 4), np.uint8), packed, 1.0, overwrite=True)


def test_bad_names_and_files(image: Path, packed: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"ends in \.ozx"):
        cellvol.pack(image, tmp_path / "x.zip")
    with pytest.raises(WriteConflictError, match="exists"):
        cellvol.pack(image, packed)
    with pytest.raises(StoreNotFoundError, match=r"none\.ozx does not exist"):
        cellvol.open(tmp_path / "none.ozx")
    (tmp_path / "fake.ozx").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match="not a readable zip archive"):
        cellvol.open(tmp_path / "fake.ozx")
    with pytest.raises(InvalidInputError, match="not a zipped OME-Zarr"):
        cellvol.unpack(image, tmp_path / "u")


def test_read_over_http_by_byte_ranges(
    image: Path, packed: Path, http_server: Callable[[str | os.PathLike[str]], str]
) -> None:
    base = http_server(packed.parent)
    url = f"{base}/{packed.name}"
    _assert_same_image(cellvol.open(url), cellvol.open(image))


def test_info_on_the_command_line(packed: Path) -> None:
    from typer.testing import CliRunner

    from cellvol.cli import app

    result = CliRunner().invoke(app, ["info", str(packed), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["levels"]


def test_ngff_zarr_reads_the_archive(image: Path, packed: Path) -> None:
    ngff_zarr = pytest.importorskip("ngff_zarr", reason="ngff-zarr is not installed")
    multiscales = ngff_zarr.from_ngff_zarr(str(packed))
    expected = cellvol.open(image)
    assert len(multiscales.images) == len(expected.levels)
    np.testing.assert_array_equal(np.asarray(multiscales.images[0].data), expected[:])


@pytest.mark.parametrize("where", ["local", "http", "s3"])
def test_serve_gives_the_archives_entries_wherever_it_lies(
    packed: Path,
    where: str,
    http_server: Callable[[str | os.PathLike[str]], str],
    request: pytest.FixtureRequest,
) -> None:
    from server_helpers import Running

    from cellvol.server import Server

    options: dict[str, object] | None = None
    source = str(packed)
    if where == "http":
        source = f"{http_server(packed.parent)}/{packed.name}"
    elif where == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        options = dict(bucket.storage_options)
        remote = open_store(bucket.url(), mode="a", storage_options=options)
        write_bytes(remote, "img.ozx", packed.read_bytes())
        source = bucket.url("img.ozx")
    with zipfile.ZipFile(packed) as archive:
        key = next(n for n in archive.namelist() if "/c/" in n)
        stored = archive.read(key)
    with Server([source], storage_options=options) as server:
        running = Running(
            server.url, server.host, server.port, packed, packed, np.empty(0), np.empty(0)
        )
        assert running.request("/data/img/zarr.json").status == 200
        whole = running.request(f"/data/img/{key}")
        assert whole.status == 200
        assert whole.body == stored
        part = running.request(f"/data/img/{key}", headers={"Range": "bytes=2-9"})
        assert part.status == 206
        assert part.body == stored[2:10]
        tail = running.request(f"/data/img/{key}", headers={"Range": "bytes=-5"})
        assert tail.body == stored[-5:]
        assert running.request("/data/img/0/c/9/9/9").status == 404
        assert running.request("/tiles/img/0/z/0/0/0.png").status == 200


def test_pack_from_s3_and_read_an_archive_on_s3(
    image: Path, packed: Path, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    source = s3_bucket.url("img.ome.zarr")
    store = open_store(source, mode="w", storage_options=s3_bucket.storage_options)
    local = open_store(image)
    for key in list_keys(local):
        data = read_bytes(local, key)
        assert data is not None
        write_bytes(store, key, data)
    out = cellvol.pack(source, tmp_path / "s3.ozx", storage_options=s3_bucket.storage_options)
    with zipfile.ZipFile(out) as made, zipfile.ZipFile(packed) as expected:
        assert made.namelist() == expected.namelist()
        assert all(made.read(n) == expected.read(n) for n in made.namelist())
    archive = s3_bucket.url("img.ozx")
    remote = open_store(s3_bucket.url(), mode="a", storage_options=s3_bucket.storage_options)
    write_bytes(remote, "img.ozx", out.read_bytes())
    _assert_same_image(
        cellvol.open(archive, storage_options=s3_bucket.storage_options), cellvol.open(image)
    )


def test_an_unfinished_write_is_not_packed(image: Path, tmp_path: Path) -> None:
    import shutil

    from cellvol.errors import WriteConflictError

    copy = tmp_path / "img.ome.zarr"
    shutil.copytree(image, copy)
    (copy / "_cellvol" / "complete.json").unlink()
    with pytest.raises(WriteConflictError, match="holds a write that has not finished"):
        cellvol.pack(copy, tmp_path / "img.ozx")
    assert not (tmp_path / "img.ozx").exists()


def test_serve_answers_502_for_an_entry_without_its_local_header(
    packed: Path, tmp_path: Path
) -> None:
    from server_helpers import Running

    from cellvol.server import Server

    damaged = tmp_path / "img.ozx"
    raw = bytearray(packed.read_bytes())
    with zipfile.ZipFile(packed) as archive:
        entry = next(e for e in archive.infolist() if "/c/" in e.filename)
    raw[entry.header_offset] ^= 0xFF  # the local header's signature
    damaged.write_bytes(bytes(raw))
    with Server([str(damaged)]) as server:
        running = Running(
            server.url, server.host, server.port, damaged, damaged, np.empty(0), np.empty(0)
        )
        assert running.request(f"/data/img/{entry.filename}").status == 502
        assert running.request("/data/img/zarr.json").status == 200


def _zipfile_written(image: Path, packed: Path, out: Path) -> bytes:
    """The archive zipfile's own entry writer makes of the same objects, stamps and comment."""
    with zipfile.ZipFile(packed) as made:
        infos = made.infolist()
        comment = made.comment
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for info in infos:
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.external_attr = info.external_attr
            with archive.open(entry, "w", force_zip64=True) as stream:
                stream.write((image / info.filename).read_bytes())
        archive.comment = comment
    return out.read_bytes()


@pytest.mark.parametrize("small_pieces", [False, True])
def test_pack_writes_what_zipfile_would(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pieces: bool
) -> None:
    if small_pieces:  # many pieces a file, the last one short
        monkeypatch.setattr(_zip_entries, "_PIECE_BYTES", 1000)
    out = cellvol.pack(image, tmp_path / "fast.ozx")
    assert out.read_bytes() == _zipfile_written(image, out, tmp_path / "zipfile.ozx")


def test_pack_of_an_image_out_of_the_page_cache_writes_what_zipfile_would(
    image: Path, tmp_path: Path
) -> None:
    # Cold, each file is read ahead (the next few queued behind the CRC-32 being computed)
    # before it is copied: the archive is the same.
    for path in sorted(p for p in image.rglob("*") if p.is_file()):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    out = cellvol.pack(image, tmp_path / "cold.ozx")
    assert out.read_bytes() == _zipfile_written(image, out, tmp_path / "zipfile.ozx")


def test_an_object_that_grows_while_packed_is_reported(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.ome.zarr"
    shutil.copytree(image, source)
    real = _zip_entries.FileHasher.crc

    def growing(self: _zip_entries.FileHasher, path: Path) -> tuple[int, int]:
        found = real(self, path)
        with open(path, "ab") as stream:  # after its CRC was computed
            stream.write(b"more")
        return found

    monkeypatch.setattr(_zip_entries.FileHasher, "crc", growing)
    with pytest.raises(SourceChangedError, match="changed size while it was packed"):
        cellvol.pack(source, tmp_path / "x.ozx")
    assert not (tmp_path / "x.ozx").exists()
    assert not (tmp_path / "x.ozx.partial").exists()


def _assert_nothing_left_open(source: Path) -> None:
    """No pack thread alive and no descriptor open on a file under ``source``."""
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cellvol-pack-")]
    opened = []
    for entry in Path("/proc/self/fd").iterdir():
        # A descriptor closed since it was listed (the listing's own) is skipped.
        with contextlib.suppress(OSError):
            opened.append(os.readlink(entry))
    assert not [name for name in opened if name.startswith(str(source))]


def _largest_file(root: Path) -> Path:
    return max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_an_object_that_shrinks_while_packed_is_reported(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.ome.zarr"
    shutil.copytree(image, source)
    victim = _largest_file(source)
    keep = victim.stat().st_size // 2
    head = victim.read_bytes()[:1000]
    real_crc = _zip_entries.zip_crc32
    started = False

    def shrinking(data: Any, crc: int = 0) -> int:
        nonlocal started
        # Cut the file under the reader once its first piece has been read.
        if not started and crc == 0 and bytes(data) == head:
            started = True
            os.truncate(victim, keep)
        return real_crc(data, crc)

    monkeypatch.setattr(_zip_entries, "_PIECE_BYTES", 1000)
    monkeypatch.setattr(_zip_entries, "zip_crc32", shrinking)
    key = victim.relative_to(source).as_posix()
    with pytest.raises(SourceChangedError, match=f"{key} .*ended early while it was packed"):
        cellvol.pack(source, tmp_path / "x.ozx")
    assert started
    assert not (tmp_path / "x.ozx").exists()
    assert not (tmp_path / "x.ozx.partial").exists()
    _assert_nothing_left_open(source)


def test_an_object_that_vanishes_before_it_is_opened_is_reported(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.ome.zarr"
    shutil.copytree(image, source)
    victim = _largest_file(source)
    real = _zip_entries.FileHasher.crc

    def vanishing(self: _zip_entries.FileHasher, path: Path) -> tuple[int, int]:
        if path == victim:  # on the CRC-32 thread, after the image was listed
            path.unlink()
        return real(self, path)

    monkeypatch.setattr(_zip_entries.FileHasher, "crc", vanishing)
    key = victim.relative_to(source).as_posix()
    with pytest.raises(SourceChangedError, match=f"{key} disappeared while it was copied"):
        cellvol.pack(source, tmp_path / "x.ozx")
    assert not (tmp_path / "x.ozx.partial").exists()
    _assert_nothing_left_open(source)


def test_a_read_error_names_the_file_and_leaves_nothing(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.preadv
    calls = 0

    def failing(descriptor: int, buffers: Any, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:  # a bad sector under the third piece read
            raise OSError(5, "Input/output error")
        return real(descriptor, buffers, offset)

    monkeypatch.setattr(_zip_entries.os, "preadv", failing)
    with pytest.raises(OSError, match="Input/output error") as caught:
        cellvol.pack(image, tmp_path / "x.ozx")
    assert caught.value.filename is not None
    assert Path(caught.value.filename).is_relative_to(image)
    assert list(tmp_path.iterdir()) == []
    _assert_nothing_left_open(image)
