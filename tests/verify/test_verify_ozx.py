"""``cellvol.verify`` on zipped OME-Zarr (``.ozx``): the image inside, and the archive itself."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import S3Bucket
from typer.testing import CliRunner

import cellvol
from cellvol._store import open_store, write_bytes
from cellvol.cli import app

SHARD = "0/c/1/0/2"
LABEL_SHARD = "labels/cells/0/c/0/1/1"
runner = CliRunner()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("ozx-verify") / "image.ome.zarr"
    data = np.random.default_rng(11).integers(0, 255, (64, 96, 96), dtype=np.uint8)
    cellvol.write_pyramid(data, dest, 1.0, chunks=(16, 16, 16), shards=(32, 32, 32), n_levels=2)
    cellvol.write_labels(dest, (data // 64).astype(np.uint16), "cells")
    return dest


@pytest.fixture(scope="module")
def pristine(image: Path) -> Path:
    return cellvol.pack(image, image.parent / "image.ozx")


@pytest.fixture
def packed(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "image.ozx"
    shutil.copyfile(pristine, copy)
    return copy


# --- where things are in a zip file ----------------------------------------------------------

_CD_RECORD = 46  # fixed part of a central directory record
_EOCD = b"PK\x05\x06"


def _central_directory(raw: bytes) -> tuple[int, list[tuple[int, str]]]:
    """The end record's offset, and (record offset, name) of each central directory record."""
    end = raw.rfind(_EOCD)
    (start,) = struct.unpack_from("<L", raw, end + 16)
    records = []
    at = start
    while raw[at : at + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<3H", raw, at + 28)
        records.append((at, raw[at + _CD_RECORD : at + _CD_RECORD + name_length].decode()))
        at += _CD_RECORD + name_length + extra_length + comment_length
    return end, records


def _data_range(path: Path, key: str) -> tuple[int, int]:
    """Where the entry's stored bytes lie in the archive file."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(key)
    name_length, extra_length = struct.unpack_from("<2H", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def _flip_at(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0xFF
    path.write_bytes(bytes(raw))


def _record(path: Path, key: str) -> int:
    _, records = _central_directory(path.read_bytes())
    return next(at for at, name in records if name == key)


def _kinds(report: cellvol.VerifyReport) -> set[tuple[str, str]]:
    return {(p.key, p.kind) for p in report.problems}


# --- intact archives -------------------------------------------------------------------------


def test_intact_archive_verifies_as_its_directory(image: Path, pristine: Path) -> None:
    report = cellvol.verify(pristine, workers=2)
    assert report.problems == [], report.summary()
    directory = cellvol.verify(image)
    assert report.images == directory.images == ["", "labels/cells"]
    assert (report.shards, report.chunks, report.nbytes) == (
        directory.shards,
        directory.chunks,
        directory.nbytes,
    )
    assert report.unchecked == []  # an archive lists its entries, even over HTTP


def test_cli_on_an_archive(packed: Path) -> None:
    result = runner.invoke(app, ["verify", str(packed), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["intact"] is True
    start, stop = _data_range(packed, SHARD)
    _flip_at(packed, (start + stop) // 2)
    result = runner.invoke(app, ["verify", str(packed)])
    assert result.exit_code == 1
    assert f"{SHARD}: archive" in result.output
    assert "CRC-32" in result.output


# --- damage inside entries -------------------------------------------------------------------


def test_a_flipped_byte_in_a_shard_fails_both_checksums(packed: Path) -> None:
    start, _ = _data_range(packed, SHARD)
    _flip_at(packed, start + 100)
    report = cellvol.verify(packed)
    assert _kinds(report) == {(SHARD, "archive"), (SHARD, "chunk-checksum")}
    chunk = next(p for p in report.problems if p.kind == "chunk-checksum")
    assert chunk.byte_range is not None
    assert chunk.byte_range[0] <= 100 < chunk.byte_range[1]


@pytest.mark.parametrize(
    "key", ["zarr.json", "1/zarr.json", "labels/cells/_cellvol/manifest.json", LABEL_SHARD]
)
def test_a_flipped_byte_in_any_entry_names_it(packed: Path, key: str) -> None:
    start, stop = _data_range(packed, key)
    _flip_at(packed, (start + stop) // 2)
    report = cellvol.verify(packed)
    assert (key, "archive") in _kinds(report), report.summary()
    assert {p.key for p in report.problems} <= {
        key,
        "_cellvol/manifest.json",
        "labels/cells/_cellvol/manifest.json",
    }


def test_records_the_image_checks_never_read_are_checked_in_an_archive(packed: Path) -> None:
    record = "labels/cells/_cellvol/job.json"  # the write's plan: verify has no use for it
    start, stop = _data_range(packed, record)
    _flip_at(packed, (start + stop) // 2)
    # The zip's CRC-32 and the image's digests both catch it.
    assert _kinds(cellvol.verify(packed)) == {(record, "archive"), (record, "digest")}


def test_an_unlisted_entry_and_a_missing_one_are_found(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "edited.ozx"
    with zipfile.ZipFile(_pack(image, tmp_path), "r") as source, zipfile.ZipFile(out, "w") as made:
        for info in source.infolist():
            if info.filename != SHARD:
                made.writestr(info, source.read(info))
        made.writestr("0/c/9/9/9", b"stray")
        made.comment = source.comment
    assert _kinds(cellvol.verify(out)) == {
        (SHARD, "missing"),
        ("0/c/9/9/9", "unlisted"),
        ("0/c/9/9/9", "truncated"),  # five bytes: too short for a shard index
    }


def _pack(image: Path, where: Path) -> Path:
    return cellvol.pack(image, where / "fresh.ozx", overwrite=True)


# --- damage to the zip structure -------------------------------------------------------------


def _could_not_run(path: Path) -> str:
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


@pytest.mark.parametrize("keep", [lambda n: n // 2, lambda n: n - 200, lambda n: 4])
def test_a_truncated_archive_cannot_be_verified_and_says_why(
    packed: Path, keep: Callable[[int], int]
) -> None:
    raw = packed.read_bytes()
    packed.write_bytes(raw[: keep(len(raw))])
    output = _could_not_run(packed)
    assert "not a readable zip archive" in output
    assert "truncated" in output  # the hint


@pytest.mark.parametrize("cut", [1, 30])
def test_an_archive_cut_within_its_comment_is_reported_truncated(packed: Path, cut: int) -> None:
    # zipfile still finds the end record, and reads the rest of the comment as all there is.
    packed.write_bytes(packed.read_bytes()[:-cut])
    (problem,) = cellvol.verify(packed).problems
    assert (problem.key, problem.kind) == ("", "archive")
    assert f"ends {cut} byte(s) before its comment does" in problem.detail


def test_a_broken_central_directory_signature_cannot_be_verified(packed: Path) -> None:
    at, _ = _central_directory(packed.read_bytes())[1][3]
    _flip_at(packed, at + 1)
    assert "not a readable zip archive" in _could_not_run(packed)


def test_a_broken_end_record_cannot_be_verified(packed: Path) -> None:
    end, _ = _central_directory(packed.read_bytes())
    _flip_at(packed, end)  # its signature: the directory cannot be found
    assert "not a readable zip archive" in _could_not_run(packed)


def test_a_wrong_directory_offset_reports_every_entry(packed: Path) -> None:
    end, records = _central_directory(packed.read_bytes())
    _flip_at(packed, end + 17)  # the central directory's offset
    report = cellvol.verify(packed)
    located = {p.key for p in report.problems if "no local file header" in p.detail}
    assert located == {name for _, name in records}, report.summary()


def test_a_damaged_crc_in_the_central_directory_names_the_entry(packed: Path) -> None:
    _flip_at(packed, _record(packed, SHARD) + 16)
    assert _kinds(cellvol.verify(packed)) == {(SHARD, "archive")}


def test_a_damaged_entry_offset_names_the_entry(packed: Path) -> None:
    _flip_at(packed, _record(packed, SHARD) + 42)  # low byte of the local header's offset
    report = cellvol.verify(packed)
    assert (SHARD, "archive") in _kinds(report), report.summary()
    assert "local file header" in report.summary()


def test_a_damaged_name_in_the_central_directory_is_reported(packed: Path) -> None:
    _flip_at(packed, _record(packed, SHARD) + _CD_RECORD + len(SHARD) - 1)  # its last digit
    report = cellvol.verify(packed)
    assert not report.intact
    # The entry is found under no key the image expects: the shard is missing, and the name
    # that replaced it is unlisted and disagrees with its local header.
    assert (SHARD, "missing") in _kinds(report), report.summary()
    assert any(
        p.kind == "archive" and "local file header names it" in p.detail for p in report.problems
    )


def test_no_byte_of_the_central_directory_crashes_verify(packed: Path, tmp_path: Path) -> None:
    raw = packed.read_bytes()
    end, records = _central_directory(raw)
    start = records[0][0]
    positions = sorted({*range(start, len(raw), max(1, (len(raw) - start) // 40)), end + 10})
    outcomes: dict[str, int] = {"reported": 0, "could not run": 0, "harmless": 0}
    for position in positions:
        copy = tmp_path / "fuzz.ozx"
        copy.write_bytes(raw)
        _flip_at(copy, position)
        try:
            report = cellvol.verify(copy, workers=1)
        except cellvol.CellvolError:
            outcomes["could not run"] += 1
            continue
        outcomes["reported" if report.problems else "harmless"] += 1
    assert outcomes["reported"] > 0
    assert outcomes["could not run"] > 0
    assert sum(outcomes.values()) == len(positions)


# --- RFC-9's rules ---------------------------------------------------------------------------


def _repack(
    image: Path,
    out: Path,
    order: Callable[[list[str]], list[str]] = lambda names: names,
    compression: int = zipfile.ZIP_STORED,
    comment: bytes | None = None,
    twice: str | None = None,
) -> Path:
    packed = _pack(image, out.parent)
    with zipfile.ZipFile(packed) as source, zipfile.ZipFile(out, "w", compression) as made:
        for name in order(source.namelist()):
            made.writestr(name, source.read(name))
        if twice is not None:
            with pytest.warns(UserWarning, match="Duplicate name"):
                made.writestr(twice, source.read(twice))
        made.comment = source.comment if comment is None else comment
    return out


def _data_first(names: list[str]) -> list[str]:
    return [n for n in names if "/c/" in n] + [n for n in names if "/c/" not in n]


def _deepest_first(names: list[str]) -> list[str]:
    documents = [n for n in names if n.endswith("zarr.json")]
    return sorted(documents, key=lambda n: -n.count("/")) + [
        n for n in names if not n.endswith("zarr.json")
    ]


RULES: dict[str, tuple[dict[str, object], set[tuple[str, str]]]] = {
    "data before metadata": (
        {"order": _data_first},
        {("zarr.json", "archive"), ("0/zarr.json", "archive")},
    ),
    "depth first": ({"order": _deepest_first}, {("zarr.json", "archive")}),
    "no comment": ({"comment": b""}, {("", "archive")}),
    "comment not JSON": ({"comment": b"packed by hand"}, {("", "archive")}),
    "comment without jsonFirst": ({"comment": b'{"ome": {"version": "0.5"}}'}, {("", "archive")}),
    "a name listed twice": ({"twice": "1/zarr.json"}, {("1/zarr.json", "archive")}),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_rfc9_rules_are_checked(image: Path, tmp_path: Path, rule: str) -> None:
    options, expected = RULES[rule]
    report = cellvol.verify(_repack(image, tmp_path / "rule.ozx", **options))  # type: ignore[arg-type]
    assert expected <= _kinds(report), report.summary()
    assert {kind for _, kind in _kinds(report)} == {"archive"}, report.summary()


def test_compressed_entries_are_reported_and_still_checked(image: Path, tmp_path: Path) -> None:
    out = _repack(image, tmp_path / "deflated.ozx", compression=zipfile.ZIP_DEFLATED)
    report = cellvol.verify(out)
    assert report.problems, "compressed entries break RFC-9"
    assert {p.kind for p in report.problems} == {"archive"}
    assert all("compression method 8" in p.detail for p in report.problems)
    assert report.chunks == cellvol.verify(image).chunks  # the image inside was checked whole


# --- remote archives -------------------------------------------------------------------------


@pytest.fixture
def served(packed: Path, http_server: Callable[[Path], str]) -> tuple[Path, str]:
    return packed, f"{http_server(packed.parent)}/{packed.name}"


def test_an_archive_over_http_is_verified_by_byte_ranges(served: tuple[Path, str]) -> None:
    packed, url = served
    report = cellvol.verify(url, zarr_checksum=True)
    assert report.problems == [], report.summary()
    assert report.unchecked == []
    assert report.zarr_checksum == cellvol.verify(packed, zarr_checksum=True).zarr_checksum
    start, _ = _data_range(packed, LABEL_SHARD)
    _flip_at(packed, start + 40)
    assert _kinds(cellvol.verify(url)) == {
        (LABEL_SHARD, "archive"),
        (LABEL_SHARD, "chunk-checksum"),
    }


@pytest.mark.s3
def test_an_archive_on_s3_is_verified(packed: Path, s3_bucket: S3Bucket) -> None:
    remote = open_store(s3_bucket.url(), mode="a", storage_options=s3_bucket.storage_options)
    write_bytes(remote, "image.ozx", packed.read_bytes())
    url = s3_bucket.url("image.ozx")
    report = cellvol.verify(url, s3_bucket.storage_options)
    assert report.problems == [], report.summary()
    assert report.images == ["", "labels/cells"]
    start, _ = _data_range(packed, SHARD)
    _flip_at(packed, start + 7)
    write_bytes(remote, "image.ozx", packed.read_bytes())
    assert _kinds(cellvol.verify(url, s3_bucket.storage_options)) == {
        (SHARD, "archive"),
        (SHARD, "chunk-checksum"),
    }


def test_large_local_entries_are_read_header_then_data(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellvol._store import _zip

    monkeypatch.setattr(_zip, "_SPLIT_READ_BYTES", 0)  # every entry counts as large
    assert cellvol.verify(packed).problems == []
    start, _ = _data_range(packed, SHARD)
    _flip_at(packed, start + 3)
    assert _kinds(cellvol.verify(packed)) == {(SHARD, "archive"), (SHARD, "chunk-checksum")}


def test_directory_entries_are_not_objects(image: Path, tmp_path: Path) -> None:
    # Some zip tools add an entry per directory; they hold nothing and change nothing.
    out = tmp_path / "with-directories.ozx"
    with zipfile.ZipFile(_pack(image, tmp_path)) as source, zipfile.ZipFile(out, "w") as made:
        for name in source.namelist():
            made.writestr(name, source.read(name))
        for directory in ("0/", "0/c/", "labels/", "_cellvol/"):
            made.mkdir(directory)
        made.comment = source.comment
    report = cellvol.verify(out, zarr_checksum=True)
    assert report.problems == [], report.summary()
    assert report.zarr_checksum == cellvol.verify(image, zarr_checksum=True).zarr_checksum
