"""The image's digests: recorded by the write, kept true by later edits, checked by verify."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol._store import open_store
from cellvol.errors import IntegrityError
from cellvol.ome._digests import DIGESTS_KEY, encode_digests, parse_digests
from cellvol.write._digests import refresh_digests

DATA = np.random.default_rng(3).integers(0, 255, (48, 64, 64), dtype=np.uint8)
LAYOUT = {"chunks": (16, 16, 16), "shards": (32, 32, 32), "n_levels": 2}


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _digests(root: Path) -> dict[str, list[object]]:
    objects: dict[str, list[object]] = json.loads((root / DIGESTS_KEY).read_text())["objects"]
    return objects


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("digests") / "image.ome.zarr"
    cellvol.write_pyramid(DATA, dest, 2.0, **LAYOUT)
    return dest


@pytest.fixture
def image(written: Path, tmp_path: Path) -> Path:
    copy = tmp_path / written.name
    shutil.copytree(written, copy)
    return copy


def test_write_records_every_object_with_its_size_and_sha256(written: Path) -> None:
    recorded = _digests(written)
    stored = {
        key: data
        for key, data in _files(written).items()
        if not key.startswith("_cellvol/done/")
        and key not in ("_cellvol/digests.json", "_cellvol/complete.json", "_cellvol/lease.json")
    }
    assert set(recorded) == set(stored)
    assert {"zarr.json", "0/zarr.json", "1/zarr.json", "_cellvol/job.json"} <= set(recorded)
    assert "_cellvol/manifest.json" in recorded
    for key, data in stored.items():
        assert recorded[key] == [len(data), hashlib.sha256(data).hexdigest()], key
    assert json.loads((written / "_cellvol/complete.json").read_text()) == {"format": 2}
    # The shards' records carry the same digests.
    for record in (written / "_cellvol/done").rglob("*@*"):
        level = record.parent.name
        position, facts = record.name.split("@")
        size, _, sha256, *_ = facts.split("-")
        key = f"{level}/c/{position.replace('.', '/')}"
        assert recorded[key] == [int(size), sha256]


def test_record_checks_itself() -> None:
    raw = encode_digests({"zarr.json": (12, "a" * 64)})
    assert parse_digests(raw, "here") == {"zarr.json": (12, "a" * 64)}
    assert parse_digests(None, "here") is None
    for changed in (raw.replace(b"12", b"13"), raw.replace(b"\n ", b"\n\t", 1)):
        with pytest.raises(IntegrityError, match="fails its own SHA-256"):
            parse_digests(changed, "here")


def test_resume_rewrites_shards_recorded_without_digests(written: Path, tmp_path: Path) -> None:
    # As an earlier version left an interrupted write: records without the SHA-256, and no
    # manifest, digests or completion marker yet.
    old = tmp_path / written.name  # the same name: the metadata records it
    shutil.copytree(written, old)
    for name in ("complete.json", "digests.json", "manifest.json"):
        (old / "_cellvol" / name).unlink()
    for record in list((old / "_cellvol/done").rglob("*@*")):
        position, facts = record.name.split("@")
        size, fingerprint, _, *crc = facts.split("-")
        record.rename(record.with_name(f"{position}@{'-'.join([size, fingerprint, *crc])}"))
    result = cellvol.write_pyramid(DATA, old, 2.0, **LAYOUT)
    assert result.shards_reused == 0  # none trusted: each written again, byte-identical
    assert _files(old) == _files(written)


def test_refresh_digests_rehashes_named_objects(image: Path) -> None:
    store = open_store(str(image), mode="a")
    (image / "notes.json").write_text('{"@graph": []}')
    (image / "extra").mkdir()
    (image / "extra/a").write_bytes(b"a")
    (image / "extra/b").write_bytes(b"b")
    refresh_digests(store, "", ["notes.json", "extra/"])
    assert cellvol.verify(image).intact
    assert _digests(image)["extra/a"] == [1, hashlib.sha256(b"a").hexdigest()]
    (image / "extra/b").unlink()
    (image / "notes.json").unlink()
    refresh_digests(store, "/", ["extra/", "notes.json"])
    assert "extra/b" not in _digests(image)
    assert "notes.json" not in _digests(image)
    assert cellvol.verify(image).intact
    # Records and excluded bookkeeping are never listed, even when named.
    refresh_digests(store, "", ["_cellvol/complete.json", "_cellvol/done/"])
    assert not any(k.startswith("_cellvol/done") for k in _digests(image))


def test_refresh_refuses_damaged_digests_and_skips_images_without(image: Path) -> None:
    store = open_store(str(image), mode="a")
    path = image / DIGESTS_KEY
    path.write_bytes(path.read_bytes().replace(b"\n ", b"\n  ", 1))
    with pytest.raises(IntegrityError, match="verify"):
        refresh_digests(store, "", ["zarr.json"])
    path.unlink()
    refresh_digests(store, "", ["zarr.json"])
    assert not path.exists()  # an image without digests is left without


def test_labels_and_annotations_keep_digests_true(image: Path) -> None:
    cellvol.write_labels(image, (DATA // 100).astype(np.uint8), "cells")
    cellvol.annotate(image, "cells", 1, name="nucleus", description="the first")
    report = cellvol.verify(image)
    assert report.problems == [], report.summary()
    assert "labels/zarr.json" in _digests(image)
    label = _digests(image / "labels/cells")
    assert "segments/zarr.json" in label
    assert any(k.startswith("segments/id/c/") for k in label)
    # Written again with other labels, the segment table changes and the digests follow.
    cellvol.write_labels(image, (DATA // 60).astype(np.uint8), "cells", overwrite=True)
    assert cellvol.verify(image).intact


def test_image_written_before_digests_is_verified_by_checksums(image: Path) -> None:
    (image / DIGESTS_KEY).unlink()
    (image / "_cellvol/complete.json").write_text('{\n "format": 1\n}')
    report = cellvol.verify(image)
    assert report.intact, report.summary()
    (gap,) = report.unchecked
    assert "before cellvol recorded digests" in gap


def test_missing_digests_that_the_marker_promises_are_damage(image: Path) -> None:
    (image / DIGESTS_KEY).unlink()
    problems = {(p.key, p.kind) for p in cellvol.verify(image).problems}
    assert problems == {(DIGESTS_KEY, "missing")}


def test_marker_older_than_digests_is_damage(image: Path) -> None:
    (image / "_cellvol/complete.json").write_text('{\n "format": 1\n}')
    problems = {(p.key, p.kind) for p in cellvol.verify(image).problems}
    assert problems == {("_cellvol/complete.json", "unreadable")}


def test_document_that_stays_valid_is_caught_by_its_digest(image: Path) -> None:
    path = image / "zarr.json"
    text = path.read_text()
    assert '"name": "image' in text
    path.write_text(text.replace('"name": "image', '"name": "imagE', 1))
    (problem,) = cellvol.verify(image).problems
    assert (problem.key, problem.kind) == ("zarr.json", "digest")
    assert "SHA-256" in problem.detail


def test_unlisted_objects_anywhere_in_the_image(image: Path) -> None:
    for key in ("notes.txt", "0/extra", "_cellvol/other.json", "labels/x/y"):
        (image / key).parent.mkdir(parents=True, exist_ok=True)
        (image / key).write_bytes(b"x")
    (image / "_cellvol/done/0/9.9.9@1").write_bytes(b"")  # bookkeeping: not an image object
    problems = {(p.key, p.kind) for p in cellvol.verify(image).problems}
    assert problems == {
        (key, "unlisted") for key in ("notes.txt", "0/extra", "_cellvol/other.json", "labels/x/y")
    }


def test_a_record_holding_nan_is_damage_not_a_crash(image: Path) -> None:
    marker = image / "_cellvol/complete.json"
    marker.write_text('{"format": NaN}')
    found = {(p.key, p.kind) for p in cellvol.verify(image).problems}
    assert ("_cellvol/complete.json", "unreadable") in found
    with pytest.raises(IntegrityError, match="own SHA-256"):
        parse_digests(b'{"format": 1, "objects": {}, "sha256": "x", "y": NaN}', "img")


def test_a_changed_manifest_is_reported_once(image: Path) -> None:
    manifest = image / "_cellvol/manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    problems = [p for p in cellvol.verify(image).problems if p.key == "_cellvol/manifest.json"]
    assert [p.kind for p in problems] == ["digest"]
    manifest.unlink()
    problems = [p for p in cellvol.verify(image).problems if p.key == "_cellvol/manifest.json"]
    assert [p.kind for p in problems] == ["missing"]
