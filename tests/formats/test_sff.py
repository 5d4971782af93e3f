"""EMDB-SFF in and out: round trips through sfftk-rw's files, real labels, bad input, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_cli_errors import check_one_line, run_main
from typer.testing import CliRunner

import cellvol
from cellvol.cli import app
from cellvol.errors import InvalidInputError, WriteConflictError
from cellvol.labels._sff import export_sff, import_sff

sff = pytest.importorskip("sfftkrw.schema.adapter_v0_8_0_dev1", reason="needs sfftk-rw (sff)")

SHAPE = (6, 10, 12)


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint16)
    labels[1:4, 2:6, 3:9] = 7
    labels[4:6, 6:9, 1:4] = 300
    labels[0, 0, 0] = 2
    return labels


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "em.zarr"
    data = np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)
    cellvol.write_pyramid(data, path, (50, 4, 4), chunks=(4, 8, 8))
    return path


def _annotated(image: Path) -> None:
    cellvol.write_labels(image, _labels(), "cells")
    cellvol.annotate(
        image,
        "cells",
        7,
        name="mitochondrion",
        description="a mitochondrion, matrix and membranes",
        references=["GO:0005739", "UniProt:P69905"],
    )
    cellvol.annotate(image, "cells", 300, name="ribosome", references=["PDB:4v6x", "EMDB:EMD-1234"])


def _segmentation(
    lattice: np.ndarray | list[np.ndarray],
    segments: list[tuple[int, int, int]],
    references: dict[int, list[tuple[str, str]]] | None = None,
) -> object:
    """An SFF segmentation built with sfftk-rw: segments are (id, lattice id, value)."""
    seg = sff.SFFSegmentation(name="test", primary_descriptor="three_d_volume")
    seg.software_list = sff.SFFSoftwareList()
    seg.transform_list = sff.SFFTransformList()
    seg.lattice_list = sff.SFFLatticeList()
    for index, array in enumerate(lattice if isinstance(lattice, list) else [lattice]):
        seg.lattice_list.append(
            sff.SFFLattice(
                id=index,
                mode=array.dtype.name,
                endianness="little",
                size=sff.SFFVolumeStructure(
                    cols=array.shape[2], rows=array.shape[1], sections=array.shape[0]
                ),
                start=sff.SFFVolumeIndex(cols=0, rows=0, sections=0),
                data=array,
            )
        )
    seg.segment_list = sff.SFFSegmentList()
    for segment_id, lattice_id, value in segments:
        refs = sff.SFFExternalReferenceList()
        for resource, accession in (references or {}).get(segment_id, ()):
            refs.append(sff.SFFExternalReference(resource=resource, accession=accession))
        seg.segment_list.append(
            sff.SFFSegment(
                id=segment_id,
                parent_id=0,
                biological_annotation=sff.SFFBiologicalAnnotation(
                    name=f"segment {segment_id}", external_references=refs
                ),
                three_d_volume=sff.SFFThreeDVolume(lattice_id=lattice_id, value=value),
            )
        )
    return seg


@pytest.mark.parametrize("suffix", [".sff", ".hff", ".h5"])
def test_round_trip_keeps_voxels_names_and_references(
    image: Path, tmp_path: Path, suffix: str
) -> None:
    _annotated(image)
    out = export_sff(image, "cells", tmp_path / f"cells{suffix}")
    read = sff.SFFSegmentation.from_file(str(out))
    assert sorted(int(s.id) for s in read.segment_list) == [2, 7, 300]
    # Voxel (x, y, z) to physical position in ångström: 4 x 4 x 50 nm voxels.
    np.testing.assert_allclose(np.diag(read.transform_list[0].data_array[:, :3]), [40, 40, 500])
    back = import_sff(image, out, "again")
    np.testing.assert_array_equal(back.labels[:], _labels())
    original = cellvol.open(image).labels["cells"].properties
    assert back.labels.properties == original
    assert back.labels.colors == cellvol.open(image).labels["cells"].colors
    assert back.skipped_references == ()
    refs = {(r["resource"], r["accession"]) for r in back.labels.properties[7]["references"]}
    assert refs == {("GO", "GO:0005739"), ("UniProt", "P69905")}
    assert back.labels.properties[300]["name"] == "ribosome"
    assert cellvol.verify(image).intact


def test_sff_from_sfftk_rw_with_other_values_and_unknown_references(
    image: Path, tmp_path: Path
) -> None:
    # Segment IDs differ from their lattice values; GO written the OBO way; FMA is unchecked.
    lattice = np.zeros(SHAPE, np.uint8)
    lattice[2:5, 1:3, 1:3] = 1
    lattice[0:2, 5:9, 5:9] = 2
    seg = _segmentation(
        lattice,
        [(11, 0, 1), (12, 0, 2), (13, 0, 3)],
        {11: [("go", "GO_0005739"), ("FMA", "FMA_67498")]},
    )
    path = tmp_path / "from-sfftk.sff"
    assert seg.export(str(path)) == 0
    result = import_sff(image, path, "segs")
    expected = np.where(lattice == 1, 11, np.where(lattice == 2, 12, 0))
    np.testing.assert_array_equal(result.labels[:], expected)
    assert result.empty_segments == (13,)
    assert result.skipped_references == ((11, "FMA", "FMA_67498"),)
    assert result.labels.properties[11]["references"][0]["accession"] == "GO:0005739"
    assert result.labels.properties[12]["name"] == "segment 12"
    assert cellvol.verify(image).intact


def test_real_label_stack_made_by_sfftk_rw(shared_data: Path, tmp_path: Path) -> None:
    from skimage.measure import label as connected

    from cellvol.formats._open import open_source

    masks = open_source(shared_data / "sstem" / "label").array[:4]
    instances = connected(masks == 0).astype(np.uint32)
    image = cellvol.write_pyramid(np.zeros(instances.shape, np.uint8), tmp_path / "i.zarr", 4)
    ids = [int(i) for i in np.unique(instances) if i]
    seg = _segmentation(instances, [(i, 0, i) for i in ids])
    path = tmp_path / "sstem.hff"
    assert seg.export(str(path)) == 0
    result = import_sff(image.url, path, "cells")
    np.testing.assert_array_equal(result.labels[:], instances)
    assert len(result.labels.segments) == len(ids)
    assert cellvol.verify(image.url).intact


def test_segments_from_two_lattices_combine_and_must_not_overlap(
    image: Path, tmp_path: Path
) -> None:
    first = np.zeros(SHAPE, np.uint8)
    first[:2] = 5
    second = np.zeros(SHAPE, np.int16)
    second[3:] = 5
    path = _write(_segmentation([first, second], [(1, 0, 5), (2, 1, 5)]), tmp_path / "two.hff")
    combined = import_sff(image, path, "two").labels[:]
    np.testing.assert_array_equal(combined, np.where(first == 5, 1, np.where(second == 5, 2, 0)))
    second[1] = 5
    path = _write(_segmentation([first, second], [(1, 0, 5), (2, 1, 5)]), tmp_path / "o.hff")
    with pytest.raises(InvalidInputError, match=r"o\.hff: segments of lattice 1 overlap .*\[1\]"):
        import_sff(image, path, "overlap")
    path = _write(_segmentation(first, [(1, 0, 5), (2, 0, 5)]), tmp_path / "d.sff")
    with pytest.raises(InvalidInputError, match=r"d\.sff: segments 1 and 2 both claim value 5"):
        import_sff(image, path, "same")
    assert sorted(cellvol.open(image).labels) == ["two"]
    assert cellvol.verify(image).intact


def _write(seg: object, path: Path) -> Path:
    assert seg.export(str(path)) == 0  # type: ignore[attr-defined]
    return path


def test_bad_inputs_name_the_file_and_what_was_expected(image: Path, tmp_path: Path) -> None:
    wrong_shape = _write(
        _segmentation(np.zeros((2, 3, 4), np.uint8), [(1, 0, 1)]), tmp_path / "s.sff"
    )
    with pytest.raises(InvalidInputError, match=r"s\.sff: lattice 0 is \(2, 3, 4\).*\(6, 10, 12\)"):
        import_sff(image, wrong_shape, "x")
    lattice = np.ones(SHAPE, np.uint8)
    missing = _write(_segmentation(lattice, [(1, 5, 1)]), tmp_path / "m.sff")
    with pytest.raises(InvalidInputError, match=r"m\.sff: segment 1 names lattice 5.*\[0\]"):
        import_sff(image, missing, "x")
    floats = _write(_segmentation(lattice.astype(np.float32), [(1, 0, 1)]), tmp_path / "f.sff")
    with pytest.raises(InvalidInputError, match=r"f\.sff: lattice 0 holds float32"):
        import_sff(image, floats, "x")
    no_lattice = tmp_path / "n.sff"
    text = missing.read_text()
    no_lattice.write_text(text[: text.index("<lattice_list>")] + "</segmentation>\n")
    with pytest.raises(InvalidInputError, match=r"n\.sff has no 3-D volume segmentation"):
        import_sff(image, no_lattice, "x")
    # Lattice data compressed some other way than the schema's zlib: not decodable.
    import base64
    import bz2

    odd = tmp_path / "c.sff"
    text = _write(_segmentation(lattice, [(1, 0, 1)]), tmp_path / "ok.sff").read_text()
    start = text.index("<data>", text.index("<lattice ")) + len("<data>")
    end = text.index("</data>", start)
    other = base64.b64encode(bz2.compress(lattice.tobytes())).decode()
    odd.write_text(text[:start] + other + text[end:])
    with pytest.raises(InvalidInputError, match=r"c\.sff: lattice 0's data could not be decoded"):
        import_sff(image, odd, "x")
    with pytest.raises(InvalidInputError, match="is not an EMDB-SFF file"):
        import_sff(image, tmp_path / "em.zarr" / "zarr.json", "x")
    assert "x" not in cellvol.open(image).labels
    assert cellvol.verify(image).intact


def test_export_refuses_to_replace_and_unknown_suffixes(image: Path, tmp_path: Path) -> None:
    _annotated(image)
    out = export_sff(image, "cells", tmp_path / "c.sff")
    with pytest.raises(WriteConflictError):
        export_sff(image, "cells", out)
    with pytest.raises(InvalidInputError, match=r"not '\.json'"):
        export_sff(image, "cells", tmp_path / "c.json")
    with pytest.raises(InvalidInputError, match="no labels 'nope'"):
        export_sff(image, "nope", tmp_path / "d.sff")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sff", "em.zarr"]


def test_cli_convert_and_export(image: Path, tmp_path: Path) -> None:
    _annotated(image)
    runner = CliRunner()
    out = tmp_path / "cells.sff"
    result = runner.invoke(app, ["export", str(image), "--labels", "cells", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = runner.invoke(app, ["convert", str(out), str(image), "--labels", "copy"])
    assert result.exit_code == 0, result.output
    assert "3 segments" in result.output
    copy = cellvol.open(image).labels["copy"]
    np.testing.assert_array_equal(copy[:], _labels())
    assert copy.properties[7]["name"] == "mitochondrion"
    assert cellvol.verify(image).intact


def test_cli_errors_are_one_line(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(_segmentation(np.zeros((2, 3, 4), np.uint8), [(1, 0, 1)]), tmp_path / "s.sff")
    args = ["convert", str(bad), str(image), "--labels", "x"]
    line = check_one_line(args, *run_main(args, capsys))
    assert "s.sff: lattice 0 is (2, 3, 4)" in line
    args = ["export", str(image), "--labels", "none", str(tmp_path / "o.sff")]
    line = check_one_line(args, *run_main(args, capsys))
    assert "has no labels 'none'" in line


@pytest.mark.parametrize("suffix", [".sff", ".hff"])
def test_meshes_export_as_mesh_segments_sfftk_rw_reads_back(
    image: Path, tmp_path: Path, suffix: str
) -> None:
    _annotated(image)
    index = cellvol.mesh_index(image, "cells")
    assert index is not None
    assert sorted(index.segments) == [2, 7, 300]
    out = export_sff(image, "cells", tmp_path / f"cells{suffix}")
    read = sff.SFFSegmentation.from_file(str(out))
    assert read.primary_descriptor == "three_d_volume"
    assert sorted(int(segment.id) for segment in read.segment_list) == [2, 7, 300]
    for segment in read.segment_list:
        assert len(segment.mesh_list) == 1, segment.id  # every segment has its mesh
        stored = cellvol.read_mesh(image, "cells", int(segment.id))
        assert segment.three_d_volume is not None  # the voxels stay the primary description
        (mesh,) = segment.mesh_list
        assert mesh.vertices.num_vertices == len(stored.vertices)
        # x, y, z in ångström (the stored meshes are in nanometres)
        np.testing.assert_allclose(mesh.vertices.data_array, stored.vertices * 10, rtol=1e-6)
        np.testing.assert_array_equal(mesh.triangles.data_array, stored.triangles)
    identity = next(t for t in read.transform_list if int(t.id) == 1)
    np.testing.assert_array_equal(identity.data_array, np.eye(3, 4))


def test_stale_meshes_are_left_out_of_the_export_with_a_warning(
    image: Path, tmp_path: Path
) -> None:
    import json

    import zarr

    cellvol.write_labels(image, _labels(), "cells")
    # As labels of another tool: no write manifest (whose fingerprints refuse foreign shards)
    # and no cellvol provenance. That tool (zarr-python) then rewrites the voxels, leaving
    # cellvol's meshes and digests as they were.
    folder = image / "labels" / "cells"
    (folder / "_cellvol" / "manifest.json").unlink()
    body = json.loads((folder / "zarr.json").read_text())
    del body["attributes"]["cellvol"]
    (folder / "zarr.json").write_text(json.dumps(body))
    zarr.open_array(folder / "0", mode="r+")[:] = _labels()[::-1] * 2
    with pytest.warns(cellvol.CellvolWarning, match="meshes predate the labels"):
        out = export_sff(image, "cells", tmp_path / "stale.sff")
    read = sff.SFFSegmentation.from_file(str(out))
    assert all(not s.mesh_list for s in read.segment_list)


def test_mesh_only_segments_are_skipped_with_a_warning_naming_them(
    image: Path, tmp_path: Path
) -> None:
    lattice = np.zeros(SHAPE, np.uint8)
    lattice[1:3, 2:5, 2:5] = 1
    seg = _segmentation(lattice, [(1, 0, 1)])
    triangle = sff.SFFMesh(
        vertices=sff.SFFVertices(
            num_vertices=3, data=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        ),
        triangles=sff.SFFTriangles(num_triangles=1, data=np.array([[0, 1, 2]], np.uint32)),
    )
    meshes = sff.SFFMeshList()
    meshes.append(triangle)
    seg.segment_list.append(sff.SFFSegment(id=42, parent_id=0, mesh_list=meshes))
    path = _write(seg, tmp_path / "mixed.sff")
    with pytest.warns(cellvol.CellvolWarning, match=r"mixed\.sff: 1 segment.*skipped.*: 42"):
        result = import_sff(image, path, "mixed")
    assert result.surface_only_segments == (42,)
    np.testing.assert_array_equal(result.labels[:], lattice)
    assert 42 not in result.labels.segments
