"""``cellvol.verify``: intact images verify clean, and every kind of damage is named by key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import S3Bucket
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app

# Level-0 shard index size for 2³ chunks per shard: 8 entries of 16 bytes, then a CRC32C.
INDEX_NBYTES = 8 * 16 + 4
SHARD = "0/c/1/0/2"
LABEL_SHARD = "labels/cells/0/c/0/1/1"


def _write(dest: str, storage_options: dict[str, object] | None = None) -> None:
    # Noise: every shard's bytes differ, so swapped shards differ in their fingerprints.
    data = np.random.default_rng(7).integers(0, 255, (64, 96, 96), dtype=np.uint8)
    options = {"storage_options": storage_options} if storage_options else {}
    cellvol.write_pyramid(
        data, dest, 1.0, chunks=(16, 16, 16), shards=(32, 32, 32), n_levels=2, **options
    )
    labels = (data // 64).astype(np.uint16)
    cellvol.write_labels(dest, labels, "cells", **options)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("verify") / "image.ome.zarr"
    _write(str(dest))
    return dest


@pytest.fixture
def image(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "image.ome.zarr"
    shutil.copytree(pristine, copy)
    return copy


def test_intact_image_with_labels_verifies_clean_every_time(pristine: Path) -> None:
    for _ in range(5):  # no false alarms over repeated runs
        report = cellvol.verify(pristine, workers=2)
        assert report.problems == [], report.summary()
        assert report.intact
    assert report.images == ["", "labels/cells"]
    # Level 0 (2x3x3 shards) and level 1 (2x2x2... at least 1) for the image and its labels.
    assert report.shards >= 2 * 19
    assert report.chunks > report.shards
    assert report.nbytes > 0
    assert report.unchecked == []


def test_progress_reports_each_object(pristine: Path) -> None:
    events: list[cellvol.ProgressEvent] = []
    report = cellvol.verify(pristine, progress=events.append)
    last = {e.stage: e for e in events}
    assert sorted(last) == [0, 1]
    assert sum(e.done for e in last.values()) == report.shards
    assert all(e.done == e.total for e in last.values())
    assert sum(e.nbytes for e in last.values()) == report.nbytes


@pytest.mark.s3
def test_intact_image_on_s3_verifies_clean(s3_bucket: S3Bucket) -> None:
    url = s3_bucket.url("image.ome.zarr")
    _write(url, s3_bucket.storage_options)
    report = cellvol.verify(url, s3_bucket.storage_options)
    assert report.problems == [], report.summary()
    assert report.images == ["", "labels/cells"]
    assert report.shards >= 38
    # Damage there is found too: a flipped byte in a shard.
    client_key = f"image.ome.zarr/{SHARD}"
    fs_options = s3_bucket.storage_options
    import s3fs

    fs = s3fs.S3FileSystem(**fs_options)
    data = bytearray(fs.cat(f"{s3_bucket.name}/{client_key}"))
    data[10] ^= 0xFF
    fs.pipe(f"{s3_bucket.name}/{client_key}", bytes(data))
    damaged = cellvol.verify(url, s3_bucket.storage_options)
    assert {(p.key, p.kind) for p in damaged.problems} == {(SHARD, "chunk-checksum")}


def _flip(key: str, at: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / key
        data = bytearray(path.read_bytes())
        data[at(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def _delete(key: str) -> Callable[[Path], None]:
    return lambda root: (root / key).unlink()


def _truncate(key: str, keep: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / key
        data = path.read_bytes()
        path.write_bytes(data[: keep(len(data))])

    return damage


def _copy(source: str, target: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / source, root / target)

    return damage


def _swap(a: str, b: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        first, second = (root / a).read_bytes(), (root / b).read_bytes()
        (root / a).write_bytes(second)
        (root / b).write_bytes(first)

    return damage


def _add(key: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"stray")

    return damage


def _edit_shape(key: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        document = json.loads((root / key).read_text())
        document["shape"][0] += 1
        (root / key).write_text(json.dumps(document))

    return damage


_CHUNK_POSITIONS = {
    "first": lambda n: 0,
    "early": lambda n: 100,
    "middle": lambda n: n // 2,
    "last chunk's crc": lambda n: n - INDEX_NBYTES - 1,
}
_INDEX_POSITIONS = {
    "index start": lambda n: n - INDEX_NBYTES,
    "index middle": lambda n: n - INDEX_NBYTES // 2,
    "index crc": lambda n: n - 1,
}
_JSON_POSITIONS = {"start": lambda n: 1, "middle": lambda n: n // 2, "end": lambda n: n - 2}

DAMAGE: dict[str, tuple[Callable[[Path], None], set[str]]] = {}
for _shard in (SHARD, "0/c/0/0/0", "1/c/0/1/1", LABEL_SHARD):
    for _name, _at in _CHUNK_POSITIONS.items():
        DAMAGE[f"chunk byte {_name} of {_shard}"] = (_flip(_shard, _at), {_shard})
for _shard in (SHARD, LABEL_SHARD):
    for _name, _at in _INDEX_POSITIONS.items():
        DAMAGE[f"{_name} of {_shard}"] = (_flip(_shard, _at), {_shard})
for _document in (
    "zarr.json",
    "0/zarr.json",
    "1/zarr.json",
    "labels/zarr.json",
    "labels/cells/zarr.json",
    "labels/cells/1/zarr.json",
):
    for _name, _at in _JSON_POSITIONS.items():
        DAMAGE[f"{_name} of {_document}"] = (_flip(_document, _at), {_document})
for _record in ("_cellvol/manifest.json", "labels/cells/_cellvol/manifest.json"):
    for _name, _at in _JSON_POSITIONS.items():
        DAMAGE[f"{_name} of {_record}"] = (_flip(_record, _at), {_record})
DAMAGE |= {
    "flipped completion marker": (
        _flip("_cellvol/complete.json", lambda n: n // 2),
        {"_cellvol/complete.json"},
    ),
    "shard truncated by a byte": (_truncate(SHARD, lambda n: n - 1), {SHARD}),
    "shard truncated by half": (_truncate(SHARD, lambda n: n // 2), {SHARD}),
    "shard truncated to nothing": (_truncate(SHARD, lambda n: 0), {SHARD}),
    "label shard truncated": (_truncate(LABEL_SHARD, lambda n: n - 7), {LABEL_SHARD}),
    "shard deleted": (_delete(SHARD), {SHARD}),
    "coarse shard deleted": (_delete("1/c/0/1/0"), {"1/c/0/1/0"}),
    "label shard deleted": (_delete(LABEL_SHARD), {LABEL_SHARD}),
    "shard copied over another": (_copy("0/c/0/0/0", SHARD), {SHARD}),
    "shard copied to an unlisted key": (_copy(SHARD, "0/c/9/9/9"), {"0/c/9/9/9"}),
    "shards swapped": (_swap("0/c/0/0/0", SHARD), {"0/c/0/0/0", SHARD}),
    "label shards swapped": (
        _swap(LABEL_SHARD, "labels/cells/0/c/1/2/2"),
        {LABEL_SHARD, "labels/cells/0/c/1/2/2"},
    ),
    "stray object": (_add("0/c/extra"), {"0/c/extra"}),
    "stray backup beside a shard": (_add("1/c/0/0/0.bak"), {"1/c/0/0/0.bak"}),
    "manifest deleted": (_delete("_cellvol/manifest.json"), {"_cellvol/manifest.json"}),
    "completion marker deleted": (_delete("_cellvol/complete.json"), {"_cellvol/complete.json"}),
    "label manifest deleted": (
        _delete("labels/cells/_cellvol/manifest.json"),
        {"labels/cells/_cellvol/manifest.json"},
    ),
    "level metadata deleted": (_delete("1/zarr.json"), {"1/zarr.json"}),
    "label image deleted": (_delete("labels/cells/zarr.json"), {"labels/cells/zarr.json"}),
    "shape edited": (_edit_shape("0/zarr.json"), {"0/zarr.json"}),
}


def test_damage_matrix_is_large_enough() -> None:
    assert len(DAMAGE) >= 40


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_reported_by_key(image: Path, case: str) -> None:
    damage, keys = DAMAGE[case]
    damage(image)
    report = cellvol.verify(image, workers=2)
    assert not report.intact
    found = {p.key for p in report.problems}
    assert keys <= found, report.summary()
    # Nothing else is blamed: each problem names a damaged object or a record about it.
    assert found <= keys | {"_cellvol/manifest.json", "labels/cells/_cellvol/manifest.json"}, (
        report.summary()
    )


def test_chunk_damage_gives_its_byte_range(image: Path) -> None:
    _flip(SHARD, lambda n: 100)(image)
    (problem,) = cellvol.verify(image).problems
    assert problem.kind == "chunk-checksum"
    assert problem.byte_range is not None
    assert problem.byte_range[0] <= 100 < problem.byte_range[1]


def test_image_without_manifest_is_checked_by_checksums_alone(image: Path) -> None:
    # As another tool would leave it: no cellvol records, no provenance.
    for prefix in ("", "labels/cells/"):
        shutil.rmtree(image / prefix / "_cellvol")
        document = json.loads((image / prefix / "zarr.json").read_text())
        del document["attributes"]["cellvol"]
        (image / prefix / "zarr.json").write_text(json.dumps(document))
    (image / "ro-crate-metadata.json").unlink()  # cellvol's too: it lists the records
    report = cellvol.verify(image)
    assert report.intact, report.summary()
    assert len(report.unchecked) == 2
    assert all("checksums alone" in gap for gap in report.unchecked)
    _flip(SHARD, lambda n: 5)(image)
    _delete("0/c/0/0/0")(image)  # without a manifest, not detectable: reads as fill values
    assert {p.key for p in cellvol.verify(image).problems} == {SHARD}


def test_nothing_at_the_path_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(cellvol.StoreNotFoundError):
        cellvol.verify(tmp_path / "absent.ome.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(cellvol.NotOMEZarrError):
        cellvol.verify(tmp_path / "empty")


runner = CliRunner()


def test_cli_exit_codes_and_json(image: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(image)])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    result = runner.invoke(app, ["verify", str(image), "--json"])
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["intact"] is True
    assert body["problems"] == []
    assert set(body) >= {"url", "images", "shards", "chunks", "nbytes", "unchecked"}
    _flip(SHARD, lambda n: 100)(image)
    result = runner.invoke(app, ["verify", str(image), "--json"])
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["intact"] is False
    (problem,) = body["problems"]
    assert problem["key"] == SHARD
    assert problem["kind"] == "chunk-checksum"
    assert len(problem["byte_range"]) == 2
    assert set(problem) == {"key", "kind", "detail", "byte_range"}
    result = runner.invoke(app, ["verify", str(image)])
    assert result.exit_code == 1
    assert SHARD in result.output


def test_cli_cannot_run_exits_2(tmp_path: Path) -> None:
    from cellvol.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(tmp_path / "absent.ome.zarr")])
    assert exit_.value.code == 2


def test_http_verifies_listed_shards_and_says_what_it_cannot(
    image: Path, http_server: Callable[[Path], str]
) -> None:
    url = f"{http_server(image.parent)}/image.ome.zarr"
    report = cellvol.verify(url)
    assert report.intact, report.summary()
    assert report.images == ["", "labels/cells"]
    assert report.shards == cellvol.verify(image).shards
    assert len(report.unchecked) == 4  # two levels of two images
    assert all("HTTP cannot list" in gap for gap in report.unchecked)
    _flip(SHARD, lambda n: 100)(image)
    _delete(LABEL_SHARD)(image)
    problems = {(p.key, p.kind) for p in cellvol.verify(url).problems}
    assert problems == {(SHARD, "chunk-checksum"), (LABEL_SHARD, "missing")}


def test_cli_a_bug_is_no_verdict_and_exits_2(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellvol.integrity import _scan

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.delenv("CELLVOL_TRACEBACK", raising=False)
    monkeypatch.setattr(_scan, "check_object", broken)
    result = runner.invoke(app, ["verify", str(image)])
    assert result.exit_code == 2
    assert "this is a bug in cellvol" in result.output


def test_an_error_during_verify_ends_the_crate_check(
    pristine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from cellvol.integrity import _scan

    failed = threading.Event()
    finished = threading.Event()

    def slow_crate_check(raw: bytes, *, as_written: bool = False) -> None:
        # Still under way when the objects' check fails: it waits for that failure.
        assert failed.wait(timeout=60)
        finished.set()
        raise ValueError("the crate check's own failure")

    def broken(*args: object, **kwargs: object) -> None:
        failed.set()
        raise RuntimeError("a bug")

    monkeypatch.setattr(_scan, "crate_problems", slow_crate_check)
    monkeypatch.setattr(_scan, "check_object", broken)
    with pytest.raises(RuntimeError, match="a bug"):  # the first error, not the crate's
        cellvol.verify(pristine, workers=2)
    # Joined before verify returned: the thread is gone and its task ran to its end.
    assert finished.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("cellvol-verify-crate")]
