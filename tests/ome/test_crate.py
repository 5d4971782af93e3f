"""RO-Crate metadata at an image's root: what it describes, that it is valid, that it is stable.

No RO-Crate validator runs offline (roc-validator fetches the JSON-LD context and profiles from
the web), so :func:`check_rocrate_11` checks the RO-Crate 1.1 MUST rules itself, independently
of cellvol's own check in ``verify``.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from rocrate.rocrate import ROCrate
from support import S3Bucket, forget_cached_filesystems
from typer.testing import CliRunner

import cellvol
from cellvol._store import open_store
from cellvol.cli import app, main
from cellvol.ome._crate import crate_problems
from cellvol.synthetic import SyntheticVolume
from cellvol.write._digests import refresh_digests

runner = CliRunner()
CRATE = "ro-crate-metadata.json"
CONTEXT_11 = "https://w3id.org/ro/crate/1.1/context"
LAYOUT = {"chunks": (16, 16, 16), "shards": (32, 32, 32), "n_levels": 3, "name": "tomo"}
SHAPE = (64, 64, 96)


@pytest.fixture(autouse=True)
def _fixed_day(monkeypatch: pytest.MonkeyPatch) -> None:
    # Writes compared byte for byte must share their day, whenever the test runs.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def graph_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entity["@id"]: entity for entity in document["@graph"]}


def load(image: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    document = json.loads((image / CRATE).read_bytes())
    return document, graph_of(document)


def ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item["@id"] for item in items]


def check_rocrate_11(image: Path) -> dict[str, dict[str, Any]]:
    """The RO-Crate 1.1 MUST rules, checked on the stored crate; returns its graph by @id."""
    document, graph = load(image)
    # The 1.1 context, and the one term it lacks (schema.org's sha256, in the 1.3 context).
    assert document["@context"] == [CONTEXT_11, {"sha256": "http://schema.org/sha256"}]
    assert len(graph) == len(document["@graph"]), "every @id once"
    descriptor = graph[CRATE]
    assert "CreativeWork" in ids_or_types(descriptor)
    assert descriptor["conformsTo"] == {"@id": "https://w3id.org/ro/crate/1.1"}
    assert descriptor["about"] == {"@id": "./"}
    root = graph["./"]
    assert root["@type"] == "Dataset"
    assert isinstance(root["name"], str)
    assert root["name"]
    assert isinstance(root["description"], str)
    assert root["description"]
    date.fromisoformat(root["datePublished"])  # ISO 8601
    for entity in document["@graph"]:
        assert "@type" in entity, entity
        for key, value in entity.items():
            # Flattened JSON-LD: a nested object is only ever a reference, and it resolves.
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    assert set(item) == {"@id"}, (entity["@id"], key, item)
                    target = item["@id"]
                    assert target in graph or "://" in target, (entity["@id"], key, target)
        types = ids_or_types(entity)
        local = not entity["@id"].startswith("#") and "://" not in entity["@id"]
        if local and "File" in types:
            assert (image / entity["@id"]).is_file(), entity["@id"]
        if local and "Dataset" in types and entity["@id"] != "./":
            assert (image / entity["@id"] / "zarr.json").is_file(), entity["@id"]
    # Every data entity hangs from the root through hasPart.
    reached, todo = set(), ["./"]
    while todo:
        for part in ids(graph[todo.pop()].get("hasPart", [])):
            if part not in reached:
                reached.add(part)
                todo.append(part)
    data = {
        i for i, e in graph.items()
        if {"File", "Dataset"} & set(ids_or_types(e)) and not i.startswith("#") and i != "./"
    }  # fmt: skip
    assert data <= reached, data - reached
    return graph


def ids_or_types(entity: dict[str, Any]) -> list[str]:
    kind = entity["@type"]
    return kind if isinstance(kind, list) else [kind]


def test_a_converted_mrc_names_its_input_software_and_parameters(tmp_path: Path) -> None:
    mrcfile = pytest.importorskip("mrcfile")
    data = np.random.default_rng(3).integers(0, 200, (16, 48, 40), dtype=np.int16)
    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (8.0, 8.0, 8.0)  # angstrom
    image = tmp_path / "tomo.ome.zarr"
    cellvol.convert(tmp_path / "tomo.mrc", image, n_levels=2)
    graph = check_rocrate_11(image)
    raw = (tmp_path / "tomo.mrc").read_bytes()
    inputs = [e for e in graph.values() if e["@type"] == "File" and e["@id"].startswith("#")]
    assert inputs == [
        {
            "@id": "#input/tomo.mrc",
            "@type": "File",
            "name": "tomo.mrc",
            "description": "An input file (not in this crate).",
            "contentSize": str(len(raw)),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
    ]
    (action,) = [e for e in graph.values() if e["@type"] == "CreateAction"]
    assert ids(action["result"]) == ["./"]
    software = graph[action["instrument"]["@id"]]
    assert software["@type"] == "SoftwareApplication"
    assert (software["name"], software["version"]) == ("cellvol", cellvol.__version__)
    required = {
        graph[i]["name"]: graph[i]["version"] for i in ids(software["softwareRequirements"])
    }
    assert required["zarr"] == zarr.__version__
    assert "mrcfile" in required
    objects = [graph[i] for i in ids(action["object"])]
    assert objects[0]["@id"] == "#input/tomo.mrc"
    parameters = {o["name"]: o["value"] for o in objects if o["@type"] == "PropertyValue"}
    assert parameters["method"] == "mean"
    assert json.loads(parameters["voxel_size"]) == [0.8, 0.8, 0.8]
    assert "tomo.mrc" in action["description"]
    # Found through the library that defines the format too.
    crate = ROCrate(image)
    assert crate.root_dataset["datePublished"] == "2023-11-14"
    assert crate.get("#input/tomo.mrc")["sha256"] == hashlib.sha256(raw).hexdigest()
    assert {e.id for e in crate.data_entities} >= {"zarr.json", "0/", "1/"}


def test_a_tiff_stack_lists_every_slice(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    stack = tmp_path / "fib"
    stack.mkdir()
    data = np.random.default_rng(2).integers(0, 255, (6, 40, 50), dtype=np.uint8)
    for z, plane in enumerate(data):
        tifffile.imwrite(stack / f"img {z}.tif", plane)  # a space: the @id must escape it
    image = tmp_path / "f.zarr"
    cellvol.convert(stack, image, voxel_size=(10, 5, 5))
    graph = check_rocrate_11(image)
    for z in range(6):
        entity = graph[f"#input/img%20{z}.tif"]
        raw = (stack / f"img {z}.tif").read_bytes()
        assert entity["name"] == f"img {z}.tif"
        assert entity["encodingFormat"] == "image/tiff"
        assert entity["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_synthetic_image_describes_its_levels(tmp_path: Path) -> None:
    image = tmp_path / "s.zarr"
    cellvol.write_pyramid(SyntheticVolume(SHAPE, seed=7), image, (4, 2, 2), **LAYOUT)
    graph = check_rocrate_11(image)
    volume = cellvol.open(image)
    root = graph["./"]
    assert root["name"] == "tomo"
    assert root["datePublished"] == volume.provenance["date"] == "2023-11-14"
    assert "64 × 64 × 96" in root["description"]
    assert "3 levels" in root["description"]
    assert ids(root["hasPart"]) == ["zarr.json", "_cellvol/manifest.json", "0/", "1/", "2/"]
    stored = (image / "zarr.json").read_bytes()
    assert graph["zarr.json"]["sha256"] == hashlib.sha256(stored).hexdigest()
    manifest = json.loads((image / "_cellvol" / "manifest.json").read_bytes())
    for number, level in enumerate(volume.levels):
        entity = graph[f"{number}/"]
        values = {graph[i]["name"]: graph[i] for i in ids(entity["additionalProperty"])}
        assert json.loads(values["shape"]["value"]) == list(level.shape)
        assert values["dtype"]["value"] == "uint8"
        assert json.loads(values["chunks"]["value"]) == list(level.chunks)
        assert json.loads(values["shards"]["value"]) == list(level.shards)
        assert json.loads(values["scale"]["value"]) == list(level.scale)
        assert values["scale"]["unitText"] == "nanometer"
        assert values["scale"]["unitCode"] == "http://purl.obolibrary.org/obo/UO_0000018"
        assert [c["name"] for c in json.loads(values["codecs"]["value"])] == ["sharding_indexed"]
        shards = manifest["levels"][str(number)]
        assert int(entity["contentSize"]) == sum(size for size, _ in shards.values())
        assert values["shard count"]["value"] == len(shards)
    (action,) = [e for e in graph.values() if e["@type"] == "CreateAction"]
    assert all(graph[i]["@type"] == "PropertyValue" for i in ids(action["object"]))
    assert cellvol.open(image).crate == json.loads((image / CRATE).read_bytes())


def test_labels_and_annotations_are_described(tmp_path: Path) -> None:
    image = tmp_path / "em.ome.zarr"
    cellvol.write_pyramid(np.zeros((8, 40, 40), np.uint8), image, (20, 4, 4), n_levels=2)
    assert "labels/" not in graph_of(json.loads((image / CRATE).read_bytes()))
    labels = np.zeros((8, 40, 40), np.uint16)
    labels[1:4, 5:20, 5:20] = 3
    labels[5:8, 20:40, 0:10] = 9
    cellvol.write_labels(image, labels, "organelles")
    graph = check_rocrate_11(image)
    assert ids(graph["labels/"]["hasPart"]) == ["labels/organelles/"]
    label_image = graph["labels/organelles/"]
    assert ids(label_image["hasPart"]) == [
        "labels/organelles/zarr.json", "labels/organelles/0/", "labels/organelles/1/"
    ]  # fmt: skip
    assert "about" not in label_image  # nothing annotated yet
    before = (image / CRATE).read_bytes()

    cellvol.annotate(
        image, "organelles", 3, name="mitochondrion", description="traced by hand",
        references=["GO:0005739", "UniProt:P69905"],
    )  # fmt: skip
    assert (image / CRATE).read_bytes() != before
    graph = check_rocrate_11(image)
    (segment,) = [graph[i] for i in ids(graph["labels/organelles/"]["about"])]
    assert segment["@type"] == "DefinedTerm"
    assert (segment["name"], segment["termCode"]) == ("mitochondrion", "3")
    assert segment["description"] == "traced by hand"
    go, uniprot = (graph[i] for i in ids(segment["identifier"]))
    assert go["@id"] == "https://amigo.geneontology.org/amigo/term/GO:0005739"
    assert (go["@type"], go["name"], go["termCode"]) == ("DefinedTerm", "GO:0005739", "GO:0005739")
    assert graph[go["inDefinedTermSet"]["@id"]]["name"] == "GO"
    assert uniprot["@id"] == "https://www.uniprot.org/uniprotkb/P69905/entry"
    assert uniprot["name"] == "UniProt:P69905"
    # The label image's zarr.json is listed with the digest of its annotated bytes.
    stored = (image / "labels" / "organelles" / "zarr.json").read_bytes()
    assert graph["labels/organelles/zarr.json"]["sha256"] == hashlib.sha256(stored).hexdigest()
    crate = ROCrate(image)
    assert crate.get("https://www.uniprot.org/uniprotkb/P69905/entry") is not None
    assert crate.get("labels/organelles/") is not None
    assert cellvol.verify(image).intact


def test_the_bytes_depend_on_the_image_alone(tmp_path: Path) -> None:
    source = SyntheticVolume(SHAPE, seed=7)
    cellvol.write_pyramid(source, tmp_path / "a.zarr", 2.0, **LAYOUT)
    cellvol.write_pyramid(source, tmp_path / "b.zarr", 2.0, **LAYOUT)
    first = (tmp_path / "a.zarr" / CRATE).read_bytes()
    assert (tmp_path / "b.zarr" / CRATE).read_bytes() == first
    assert runner.invoke(app, ["crate", str(tmp_path / "a.zarr")]).exit_code == 0
    assert (tmp_path / "a.zarr" / CRATE).read_bytes() == first  # a refresh changes nothing


class Flaky:
    """A source that fails after ``n`` reads, as a crashed reader would."""

    def __init__(self, source: SyntheticVolume, n: int) -> None:
        self.source, self.n, self.shape, self.dtype = source, n, source.shape, source.dtype
        self.reads = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        if self.reads > self.n:
            raise OSError("simulated read failure")
        return self.source[key]


def test_a_resumed_write_leaves_the_same_crate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = SyntheticVolume(SHAPE, seed=7)
    cellvol.write_pyramid(source, tmp_path / "clean.zarr", 2.0, **LAYOUT)
    with pytest.raises(OSError, match="simulated"):
        cellvol.write_pyramid(Flaky(source, 5), tmp_path / "r.zarr", 2.0, workers=1, **LAYOUT)
    # Resumed on a later day: the write keeps the day it began.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    resumed = cellvol.write_pyramid(source, tmp_path / "r.zarr", 2.0, **LAYOUT)
    assert resumed.shards_reused > 0
    clean = (tmp_path / "clean.zarr" / CRATE).read_bytes()
    assert (tmp_path / "r.zarr" / CRATE).read_bytes() == clean
    assert json.loads(clean)["@graph"]
    assert b'"datePublished": "2023-11-14"' in clean


def test_source_date_epoch_sets_the_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    cellvol.write_pyramid(np.zeros((4, 8, 8), np.uint8), tmp_path / "z.zarr", 1.0)
    assert graph_of(cellvol.open(tmp_path / "z.zarr").crate)["./"]["datePublished"] == "1970-01-01"


def test_on_s3(s3_bucket: S3Bucket) -> None:
    url = s3_bucket.url("image.ome.zarr")
    options = s3_bucket.storage_options
    cellvol.write_pyramid(SyntheticVolume((16, 32, 32), seed=1), url, 2.0, storage_options=options)
    volume = cellvol.open(url, storage_options=options)
    crate = volume.crate
    assert crate is not None
    assert graph_of(crate)["./"]["name"] == "image"
    labels = np.zeros((16, 32, 32), np.uint8)
    labels[2:5, 3:9, 3:9] = 1
    cellvol.write_labels(url, labels, "cells", storage_options=options)
    cellvol.annotate(url, "cells", 1, references=["CL:0000540"], storage_options=options)
    graph = graph_of(cellvol.open(url, storage_options=options).crate)
    assert "http://purl.obolibrary.org/obo/CL_0000540" in graph
    assert cellvol.verify(url, options).intact
    # The command rewrites it in place, to the same bytes.
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    key = f"{s3_bucket.name}/image.ome.zarr/{CRATE}"
    before = fs.cat(key)
    fs.rm(key)
    # Through main, which closes the command's S3 sessions as the installed command does.
    try:
        with pytest.raises(SystemExit) as done:
            main(["crate", url, "--endpoint-url", options["endpoint_url"]])
    finally:
        # fsspec caches that filesystem by its options alone, credentials found in the
        # environment included: later tests that change the environment must not get it.
        forget_cached_filesystems()
    assert done.value.code == 0
    fs.invalidate_cache()
    assert fs.cat(key) == before


def test_the_command_rewrites_a_lost_crate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "c.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    written = (image / CRATE).read_bytes()
    (image / CRATE).unlink()
    assert cellvol.open(image).crate is None
    result = runner.invoke(app, ["crate", str(image)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert CRATE in result.output
    assert (image / CRATE).read_bytes() == written
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["crate", str(tmp_path / "empty")])
    assert refused.value.code == 1
    assert "no OME-Zarr image" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda text: text[:-3], "not valid JSON"),
        (lambda text: text.replace('"datePublished"', '"published"'), "no datePublished"),
        (lambda text: text.replace(f'"@id": "{CRATE}"', '"@id": "x.json"'), "rocrate cannot load"),
    ],
)
def test_verify_reports_a_bad_crate(tmp_path: Path, damage: Any, said: str) -> None:
    image = tmp_path / "v.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    assert cellvol.verify(image).intact
    path = image / CRATE
    path.write_text(damage(path.read_text()))
    report = cellvol.verify(image)
    problems = report.problems
    # The crate is also one of the objects the write's digests vouch for.
    assert {(p.key, p.kind) for p in problems} == {(CRATE, "metadata"), (CRATE, "digest")}
    assert any(said in p.detail for p in problems), problems
    assert report.crate == "rocrate"  # a changed crate is loaded and checked in full


def test_verify_trusts_a_crate_its_digest_vouches_for_without_rocrate(tmp_path: Path) -> None:
    image = tmp_path / "t.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    cellvol.write_labels(image, np.ones((4, 16, 16), np.uint8), "cells")
    # In a process of its own: this module imports rocrate.
    script = (
        "import sys, cellvol; r = cellvol.verify(sys.argv[1]); "
        "print(r.intact, r.crate, 'rocrate' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(image)], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "digest", "False"]
    # The structural check finds the objects the full one does.
    raw = (image / CRATE).read_bytes()
    assert crate_problems(raw, as_written=True) == crate_problems(raw)
    assert "labels/cells/0/zarr.json" in crate_problems(raw, as_written=True)[1]


def test_a_crate_without_a_recorded_digest_is_loaded_with_rocrate(tmp_path: Path) -> None:
    image = tmp_path / "n.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    digests = json.loads((image / "_cellvol" / "digests.json").read_bytes())
    assert CRATE in json.dumps(digests)
    (image / "_cellvol" / "digests.json").unlink()
    (image / "_cellvol" / "complete.json").unlink()
    report = cellvol.verify(image)
    assert report.crate == "rocrate"
    assert all(p.key != CRATE for p in report.problems), report.summary()


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda d: d | {"@context": "https://w3id.org/ro/crate/1.2/context"}, "not RO-Crate 1.1"),
        (lambda d: d | {"@graph": {}}, "not a list of entities"),
        (lambda d: d | {"@graph": [*d["@graph"], {"@id": "x"}]}, "not a list of entities"),
        (lambda d: d | {"@graph": [e for e in d["@graph"] if e["@id"] != "./"]}, "no ./"),
        (lambda d: d | {"@graph": [e for e in d["@graph"] if e["@id"] != CRATE]}, f"no {CRATE}"),
    ],
)
def test_the_structural_check_names_what_is_not_a_crate(
    tmp_path: Path, damage: Any, said: str
) -> None:
    image = tmp_path / "s.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    document = json.loads((image / CRATE).read_bytes())
    problems, keys = crate_problems(json.dumps(damage(document)).encode(), as_written=True)
    assert any(said in problem for problem in problems), problems
    assert keys == []


def test_verify_reports_a_crate_listing_what_is_gone(tmp_path: Path) -> None:
    image = tmp_path / "g.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    labels = np.ones((4, 16, 16), np.uint8)
    cellvol.write_labels(image, labels, "cells")
    # Labels unregistered by a tool that keeps the digests true: the crate is out of date.
    group = zarr.open_group(image / "labels", mode="a")
    group.attrs.update({"ome": {"version": "0.5", "labels": []}})
    shutil.rmtree(image / "labels" / "cells")
    refresh_digests(open_store(str(image), mode="a"), "", ["labels/zarr.json"])
    found = [(p.key, p.detail.split(": it lists ")[-1]) for p in cellvol.verify(image).problems]
    assert found == [
        (CRATE, "labels/cells/0/zarr.json, which the image does not hold"),
        (CRATE, "labels/cells/zarr.json, which the image does not hold"),
    ]
    assert runner.invoke(app, ["crate", str(image)]).exit_code == 0
    assert cellvol.verify(image).intact


def test_pack_carries_the_crate(tmp_path: Path) -> None:
    image = tmp_path / "p.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    archive = cellvol.pack(image, tmp_path / "p.ozx")
    with zipfile.ZipFile(archive) as packed:
        assert packed.read(CRATE) == (image / CRATE).read_bytes()
    # Read back where it lies, through the archive.
    assert cellvol.open(archive).crate == json.loads((image / CRATE).read_bytes())


def test_an_image_without_a_recorded_day_keeps_its_first_crates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "old.zarr"
    cellvol.write_pyramid(np.ones((4, 16, 16), np.uint16), image, 1.0)
    # As an older cellvol wrote it: no day in the provenance.
    group = zarr.open_group(image, mode="a")
    provenance = dict(group.attrs["cellvol"])
    provenance.pop("date")
    group.attrs["cellvol"] = provenance
    refresh_digests(open_store(str(image), mode="a"), "", ["zarr.json"])
    (image / CRATE).unlink()
    refresh_digests(open_store(str(image), mode="a"), "", [CRATE])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert runner.invoke(app, ["crate", str(image)]).exit_code == 0
    first = (image / CRATE).read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")  # years later
    assert runner.invoke(app, ["crate", str(image)]).exit_code == 0
    assert (image / CRATE).read_bytes() == first
    assert '"datePublished": "2023-11-14"' in first.decode()
    assert cellvol.verify(image).intact
