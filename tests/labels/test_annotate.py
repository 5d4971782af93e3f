"""Annotating segments: stored as OME-Zarr properties, checked, all-or-nothing from files."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app
from cellvol.errors import InvalidInputError

runner = CliRunner()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "em.ome.zarr"
    cellvol.write_pyramid(np.zeros((8, 40, 40), np.uint8), path, (20, 4, 4), n_levels=2)
    labels = np.zeros((8, 40, 40), np.uint16)
    labels[1:4, 5:20, 5:20] = 3
    labels[5:8, 20:40, 0:10] = 9
    cellvol.write_labels(path, labels, "organelles")
    return path


def _stored_properties(image: Path) -> list[dict]:
    attrs = zarr.open_group(image / "labels" / "organelles", mode="r").attrs
    return attrs["ome"]["image-label"]["properties"]


def test_annotate_one_segment(image: Path) -> None:
    before = zarr.open_array(image / "labels" / "organelles" / "0", mode="r")[...]
    stored = cellvol.annotate(
        image,
        "organelles",
        3,
        name="mitochondrion",
        description="outer membrane traced by hand",
        references=[{"resource": "GO", "accession": "GO:0005739"}, "UniProt:P69905"],
    )
    assert stored["name"] == "mitochondrion"
    assert stored["references"][1] == {
        "resource": "UniProt",
        "accession": "P69905",
        "url": "https://www.uniprot.org/uniprotkb/P69905/entry",
    }
    properties = cellvol.open(image).labels["organelles"].properties
    assert properties[3]["description"] == "outer membrane traced by hand"
    assert "name" not in properties[9]
    # Changing one field keeps the others; the voxels are never rewritten.
    cellvol.annotate(image, "organelles", 3, name="mitochondrion 1")
    properties = cellvol.open(image).labels["organelles"].properties
    assert properties[3]["name"] == "mitochondrion 1"
    assert len(properties[3]["references"]) == 2
    after = zarr.open_array(image / "labels" / "organelles" / "0", mode="r")[...]
    np.testing.assert_array_equal(before, after)


def test_bad_annotations_are_refused_and_change_nothing(image: Path) -> None:
    before = _stored_properties(image)
    with pytest.raises(InvalidInputError, match=r"segment 4 does not exist: .* IDs 3 to 9"):
        cellvol.annotate(image, "organelles", 4, name="x")
    with pytest.raises(InvalidInputError, match="not a valid UniProt accession"):
        cellvol.annotate(image, "organelles", 3, references=["UniProt:P123"])
    with pytest.raises(InvalidInputError, match="unknown resource 'Uniprot_KB'"):
        cellvol.annotate(image, "organelles", 3, references=[("Uniprot_KB", "P69905")])
    with pytest.raises(InvalidInputError, match="segment_id must be an integer"):
        cellvol.annotate(image, "organelles", True, name="x")  # type: ignore[arg-type]
    with pytest.raises(cellvol.InvalidInputError, match="no labels 'cells'"):
        cellvol.annotate(image, "cells", 3, name="x")
    assert _stored_properties(image) == before


def test_annotations_from_csv_and_json(image: Path, tmp_path: Path) -> None:
    table = tmp_path / "segments.csv"
    table.write_text(
        "segment_id,name,description,references\n"
        '3,mitochondrion,"a long, thin one",GO:0005739; UniProt:P69905\n'
        "9,ribosome cluster,,PDB:4v6x\n"
    )
    assert cellvol.annotate_from_file(image, "organelles", table) == 2
    properties = cellvol.open(image).labels["organelles"].properties
    assert properties[3]["description"] == "a long, thin one"
    assert [r["accession"] for r in properties[3]["references"]] == ["GO:0005739", "P69905"]
    assert properties[9]["references"][0]["url"] == "https://www.rcsb.org/structure/4v6x"
    assert "description" not in properties[9]
    document = tmp_path / "segments.json"
    document.write_text(
        json.dumps(
            [{"segment_id": 9, "references": [{"resource": "EMDB", "accession": "EMD-1234"}]}]
        )
    )
    cellvol.annotate_from_file(image, "organelles", document)
    properties = cellvol.open(image).labels["organelles"].properties
    assert properties[9]["name"] == "ribosome cluster"
    assert properties[9]["references"] == [
        {"resource": "EMDB", "accession": "EMD-1234", "url": "https://www.ebi.ac.uk/emdb/EMD-1234"}
    ]


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("id,name\n3,x\n", ".csv", "must name a 'segment_id' column"),
        ("segment_id,colour\n3,red\n", ".csv", r"unknown column\(s\) \['colour'\]"),
        ("segment_id,references\n3,GO:1\n", ".csv", r"line 2: 'GO:1' is not a valid GO"),
        ("segment_id,name\n3,a\n3,b\n", ".csv", "line 3: segment 3 appears twice"),
        ("segment_id,name\n3,a\n77,b\n", ".csv", "segment 77 does not exist"),
        ('{"segment_id": 3}', ".json", "expected a JSON list of objects"),
        ('[{"segment_id": "x"}]', ".json", r"entry 0: segment_id must be an integer"),
        ('[{"segment_id": 3, "name": 5}]', ".json", "entry 0: name must be text"),
        ("[{", ".json", "not valid JSON"),
        ("segment_id\n3\n", ".txt", "annotation files are .csv or .json"),
    ],
)
def test_bad_annotation_files_name_the_row(
    image: Path, tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    before = _stored_properties(image)
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        cellvol.annotate_from_file(image, "organelles", path)
    assert _stored_properties(image) == before


def test_cli_adds_labels_and_annotates(tmp_path: Path) -> None:
    image = tmp_path / "em.ome.zarr"
    cellvol.write_pyramid(np.zeros((6, 30, 30), np.uint8), image, (20, 4, 4), n_levels=2)
    labels = np.zeros((6, 30, 30), np.uint8)
    labels[2:5, 3:9, 3:9] = 4
    np.save(tmp_path / "seg.npy", labels)
    result = runner.invoke(
        app, ["convert", str(tmp_path / "seg.npy"), str(image), "--labels", "cells"]
    )
    assert result.exit_code == 0, result.output
    assert "1 segments" in result.output
    refused = runner.invoke(
        app, ["convert", str(tmp_path / "seg.npy"), str(image), "--labels", "x", "--levels", "2"]
    )
    assert refused.exit_code != 0
    assert "--levels do not apply with --labels" in refused.output
    table = tmp_path / "a.csv"
    table.write_text("segment_id,name,references\n4,nucleus,GO:0005634\n")
    result = runner.invoke(app, ["annotate", str(image), str(table), "--labels", "cells"])
    assert result.exit_code == 0, result.output
    assert "Annotated 1 segment(s)" in result.output
    assert cellvol.open(image).labels["cells"].properties[4]["name"] == "nucleus"
    info = runner.invoke(app, ["info", str(image)], terminal_width=200)
    assert "labels cells" in info.output


def test_segment_table_carries_the_annotations(image: Path) -> None:
    pd = pytest.importorskip("pandas")
    cellvol.annotate(
        image,
        "organelles",
        3,
        name="mitochondrion",
        description="outer membrane traced by hand",
        references=["GO:0005739", "UniProt:P69905"],
    )
    cellvol.annotate(image, "organelles", 9, name="vesicle")
    table = cellvol.open(image).labels["organelles"].segments.to_pandas()
    assert table.loc[3, "name"] == "mitochondrion"
    assert table.loc[3, "description"] == "outer membrane traced by hand"
    assert table.loc[3, "references"] == "GO:0005739; UniProt:P69905"
    assert table.loc[9, "name"] == "vesicle"
    assert pd.isna(table.loc[9, "references"])
    assert table.loc[3, "voxel_count"] == 3 * 15 * 15


def test_segment_table_without_annotations_has_empty_name_columns(image: Path) -> None:
    pytest.importorskip("pandas")
    table = cellvol.open(image).labels["organelles"].segments.to_pandas()
    assert table["name"].isna().all()
    assert table["references"].isna().all()
    assert "description" not in table  # only when some segment has one
