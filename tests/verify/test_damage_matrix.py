"""The damage matrix: hundreds of seeded kinds of damage, none silent, each naming its key.

Two pristine images are damaged, a fresh copy per case: a synthetic one with a label image and
annotations, and a real file from ``../shared/data`` converted by cellvol. Cases are drawn
with a seeded generator from the objects each image's digests list: byte flips in chunk data,
shard indexes, metadata documents and cellvol's records (the manifest, the digests
themselves), edits that keep a document valid JSON (a digit of a voxel size, a description, a
display window, an annotation), truncation, deletion, duplication, swapped shards and stray
objects at the root and inside levels.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

import cellvol
from cellvol._codec._layout import chunk_layout

N_SYNTHETIC = 230
N_REAL = 70
REAL_FILE = "cryoet/13pf_MT.tif"
SEED = 24

Damage = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One kind of damage, and the keys the report must name for it."""

    what: str
    damage: Damage
    keys: frozenset[str]


def _write_synthetic(dest: Path) -> None:
    data = np.random.default_rng(SEED).integers(0, 255, (64, 96, 96), dtype=np.uint8)
    cellvol.write_pyramid(data, dest, 1.0, chunks=(16, 16, 16), shards=(32, 32, 32), n_levels=2)
    cellvol.write_labels(dest, (data // 64).astype(np.uint16), "cells")
    cellvol.annotate(dest, "cells", 1, name="vesicle 7", description="membrane 42 nm")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("matrix") / "synthetic.ome.zarr"
    _write_synthetic(dest)
    return dest


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    source = shared_data / REAL_FILE
    if not source.is_file():
        pytest.skip(f"{REAL_FILE} not found in ../shared/data")
    dest = tmp_path_factory.mktemp("matrix") / "real.ome.zarr"
    cellvol.convert(source, dest, chunks=(16, 16, 16), shards=(32, 32, 32), n_levels=2)
    return dest


# -- the kinds of damage -------------------------------------------------------------------------


def _flip(key: str, at: int, mask: int) -> Damage:
    def damage(root: Path) -> None:
        path = root / key
        data = bytearray(path.read_bytes())
        data[at] ^= mask
        path.write_bytes(bytes(data))

    return damage


def _edit_digit(key: str, anchor: str) -> Damage:
    """Change the first digit after ``anchor``: the document stays valid JSON."""

    def damage(root: Path) -> None:
        path = root / key
        text = path.read_text()
        start = text.index(anchor) + len(anchor)
        at = next(i for i in range(start, len(text)) if text[i].isdigit())
        path.write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :])

    return damage


def _white_space(key: str) -> Damage:
    """Indent a line with a tab instead of a space: the same JSON, other bytes."""

    def damage(root: Path) -> None:
        path = root / key
        path.write_bytes(path.read_bytes().replace(b"\n ", b"\n\t", 1))

    return damage


def _truncate(key: str, keep: int) -> Damage:
    def damage(root: Path) -> None:
        path = root / key
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def _delete(key: str) -> Damage:
    return lambda root: (root / key).unlink()


def _copy(source: str, target: str) -> Damage:
    def damage(root: Path) -> None:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / source, root / target)

    return damage


def _swap(a: str, b: str) -> Damage:
    def damage(root: Path) -> None:
        first, second = (root / a).read_bytes(), (root / b).read_bytes()
        (root / a).write_bytes(second)
        (root / b).write_bytes(first)

    return damage


def _add(key: str) -> Damage:
    def damage(root: Path) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b'{"stray": true}')

    return damage


# -- drawing the cases ---------------------------------------------------------------------------


def _objects(root: Path) -> dict[str, int]:
    """Every object the image's digests (and its label images') list, with its size."""
    found: dict[str, int] = {}
    for record in sorted(root.rglob("_cellvol/digests.json")):
        prefix = str(record.parent.parent.relative_to(root))
        prefix = "" if prefix == "." else f"{prefix}/"
        for key, (size, _) in json.loads(record.read_text())["objects"].items():
            found[prefix + key] = size
    return found


def _index_nbytes(root: Path, shard: str) -> int:
    level = shard[: shard.index("/c/")]
    layout = chunk_layout(zarr.open_array(root / level, mode="r"))
    assert layout is not None
    return int(layout.index_nbytes)


def _valid_json_edits(root: Path) -> list[Case]:
    """Digit changes that leave each document valid JSON (and mostly valid OME-Zarr)."""
    edits = [
        ("zarr.json", '"scale": ['),  # level 0's voxel size
        ("zarr.json", '"path": "1"'),  # level 1's voxel size (its scale follows)
        ("zarr.json", '"end": '),  # the display window
        ("zarr.json", '"start": '),
        ("zarr.json", '"defaultZ": '),
        ("zarr.json", '"source": '),  # the provenance's description of the source
        ("zarr.json", '"translation": ['),
        ("0/zarr.json", '"fill_value": '),
        ("1/zarr.json", '"shape": ['),
        ("_cellvol/job.json", '"voxel_size": ['),
        ("_cellvol/manifest.json", '"levels": {'),
        ("_cellvol/digests.json", '"zarr.json": ['),
        ("_cellvol/digests.json", '"sha256": "'),
        ("_cellvol/complete.json", '"format": '),
    ]
    if (root / "labels/cells/zarr.json").exists():
        edits += [
            ("labels/cells/zarr.json", '"description": "membrane '),  # an annotation
            ("labels/cells/zarr.json", '"name": "vesicle '),
            ("labels/cells/zarr.json", '"voxel_count": '),
            ("labels/cells/zarr.json", '"rgba": ['),
            ("labels/cells/zarr.json", '"scale": ['),
            ("labels/cells/_cellvol/manifest.json", '"arrays": {'),
            ("labels/cells/segments/zarr.json", '"rows": '),
        ]
    cases = []
    for key, anchor in edits:
        if anchor in (root / key).read_text():
            what = f"digit after {anchor!r} in {key}"
            cases.append(Case(what, _edit_digit(key, anchor), frozenset({key})))
    for key in ("_cellvol/complete.json", "_cellvol/digests.json", "zarr.json", "0/zarr.json"):
        cases.append(Case(f"white space changed in {key}", _white_space(key), frozenset({key})))
    return cases


def _draw(root: Path, count: int) -> list[Case]:
    """``count`` cases, drawn with a seeded generator from the image's objects."""
    rng = np.random.default_rng(SEED)
    objects = _objects(root)
    shards = sorted(k for k in objects if "/c/" in k and "segments/" not in k)
    documents = sorted(k for k in objects if k.endswith("zarr.json"))
    records = sorted(k for k in objects if "_cellvol/" in k) + sorted(
        str(p.relative_to(root))
        for name in ("digests.json", "complete.json")
        for p in root.rglob(f"_cellvol/{name}")
    )
    everything = sorted(objects) + [r for r in records if r not in objects]

    def pick(keys: list[str]) -> str:
        return keys[int(rng.integers(len(keys)))]

    def size(key: str) -> int:
        return (root / key).stat().st_size

    levels = sorted({k[: k.index("/c/")] for k in shards})
    strays = ["stray.txt", ".DS_Store", "_cellvol/extra.json", "labels/notes.txt"]
    for level in levels:
        strays += [f"{level}/stray", f"{level}/c/0/0/0.bak", f"{level}/c/stray/x"]
    cases = _valid_json_edits(root)
    cases += [Case(f"stray object {key}", _add(key), frozenset({key})) for key in strays]
    share = {
        "chunk": 0.3,
        "index": 0.12,
        "document": 0.13,
        "record": 0.12,
        "truncate": 0.09,
        "delete": 0.09,
        "duplicate": 0.06,
        "swap": 0.09,
    }
    budget = count - len(cases)
    for kind, fraction in share.items():
        for _ in range(max(2, int(fraction * budget))):
            mask = int(rng.integers(1, 256))
            if kind == "chunk":
                key = pick(shards)
                at = int(rng.integers(size(key) - _index_nbytes(root, key)))
                what = f"chunk byte {at} of {key} ^ {mask:#x}"
                cases.append(Case(what, _flip(key, at, mask), frozenset({key})))
            elif kind == "index":
                key = pick(shards)
                n = size(key)
                at = n - 1 - int(rng.integers(_index_nbytes(root, key)))
                what = f"index byte {at} of {key} ^ {mask:#x}"
                cases.append(Case(what, _flip(key, at, mask), frozenset({key})))
            elif kind in ("document", "record"):
                key = pick(documents if kind == "document" else records)
                at = int(rng.integers(size(key)))
                what = f"byte {at} of {key} ^ {mask:#x}"
                cases.append(Case(what, _flip(key, at, mask), frozenset({key})))
            elif kind == "truncate":
                key = pick(everything)
                keep = int(rng.integers(size(key)))
                what = f"{key} truncated to {keep} bytes"
                cases.append(Case(what, _truncate(key, keep), frozenset({key})))
            elif kind == "delete":
                key = pick(everything)
                cases.append(Case(f"{key} deleted", _delete(key), frozenset({key})))
            elif kind == "duplicate":
                source = pick(shards)
                level = source[: source.index("/c/")]
                target = pick(
                    [
                        f"{level}/c/7/7/7",
                        f"{level}/{source.rsplit('/', 1)[1]}",
                        "copy-of-a-shard",
                        pick([s for s in shards if s != source]),
                    ]
                )
                what = f"{source} copied to {target}"
                cases.append(Case(what, _copy(source, target), frozenset({target})))
            else:
                a, b = pick(shards), pick(shards)
                while b == a:
                    b = pick(shards)
                cases.append(Case(f"{a} and {b} swapped", _swap(a, b), frozenset({a, b})))
    while len(cases) < count:  # top up with more chunk flips
        key = pick(shards)
        at = int(rng.integers(size(key) - _index_nbytes(root, key)))
        cases.append(Case(f"chunk byte {at} of {key}", _flip(key, at, 0xFF), frozenset({key})))
    return cases[:count]


@functools.cache
def _cases(root: Path, count: int) -> tuple[Case, ...]:
    cases = _draw(root, count)
    assert len(cases) == count
    assert len({c.what for c in cases}) >= count * 0.95  # hardly any drawn twice
    return tuple(cases)


def _check(pristine: Path, tmp_path: Path, case: Case) -> None:
    image = tmp_path / pristine.name
    shutil.copytree(pristine, image)
    case.damage(image)
    report = cellvol.verify(image, workers=2)
    assert not report.intact, f"silent: {case.what}"
    # The damaged keys and nothing else: no intact object is blamed.
    assert {p.key for p in report.problems} == case.keys, f"{case.what}:\n{report.summary()}"


@pytest.mark.parametrize("number", range(N_SYNTHETIC))
def test_synthetic_damage_is_named(synthetic: Path, tmp_path: Path, number: int) -> None:
    _check(synthetic, tmp_path, _cases(synthetic, N_SYNTHETIC)[number])


@pytest.mark.parametrize("number", range(N_REAL))
def test_real_file_damage_is_named(real: Path, tmp_path: Path, number: int) -> None:
    _check(real, tmp_path, _cases(real, N_REAL)[number])


def test_matrix_covers_every_kind(synthetic: Path) -> None:
    whats = " ".join(c.what for c in _cases(synthetic, N_SYNTHETIC))
    for kind in (
        "chunk byte",
        "index byte",
        "zarr.json ^",
        "_cellvol/manifest.json ^",
        "_cellvol/digests.json ^",
        "digit after",
        "truncated",
        "deleted",
        "copied",
        "swapped",
        "stray object",
        "membrane",  # an annotation's description
    ):
        assert kind in whats, kind


@pytest.mark.parametrize("run", range(15))
def test_intact_images_raise_no_false_alarm(synthetic: Path, run: int) -> None:
    report = cellvol.verify(synthetic, workers=1 + run % 3)
    assert report.problems == [], report.summary()
    assert report.unchecked == []
    assert report.images == ["", "labels/cells"]


@pytest.mark.parametrize("run", range(15))
def test_intact_real_file_raises_no_false_alarm(real: Path, run: int) -> None:
    report = cellvol.verify(real, workers=1 + run % 3)
    assert report.problems == [], report.summary()
    assert report.unchecked == []
