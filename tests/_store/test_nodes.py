"""_store._nodes: opening zarr v3 and v2 nodes from their documents, and a group's arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from cellvol._store import open_store
from cellvol._store._nodes import array_key, open_node, read_arrays
from cellvol.errors import MetadataError, NotOMEZarrError


def _group_with_arrays(root: Path, zarr_format: int) -> zarr.Group:
    group = zarr.open_group(root, mode="w", zarr_format=zarr_format, attributes={"k": "v"})
    for name, size in (("0", 8), ("1", 4)):
        array = group.create_array(name, shape=(size, size), dtype="uint16", chunks=(2, 2))
        array[...] = np.arange(size * size, dtype="uint16").reshape(size, size)
    group.create_group("sub")
    return group


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_group_opens_with_its_attributes(tmp_path: Path, zarr_format: int) -> None:
    _group_with_arrays(tmp_path / "g.zarr", zarr_format)
    node = open_node(open_store(tmp_path / "g.zarr"), "g.zarr")
    assert isinstance(node, zarr.Group)
    assert node.metadata.zarr_format == zarr_format
    assert dict(node.attrs) == {"k": "v"}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_an_array_opens_and_reads(tmp_path: Path, zarr_format: int) -> None:
    array = zarr.create_array(
        tmp_path / "a.zarr", shape=(3, 5), dtype="float32", zarr_format=zarr_format
    )
    array[...] = np.full((3, 5), 2.5, dtype="float32")
    node = open_node(open_store(tmp_path / "a.zarr"), "a.zarr")
    assert isinstance(node, zarr.Array)
    assert node.metadata.zarr_format == zarr_format
    np.testing.assert_array_equal(node[...], np.full((3, 5), 2.5, dtype="float32"))


def test_nothing_zarr_is_named(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not zarr")
    with pytest.raises(NotOMEZarrError, match=r"plain holds no zarr group or array"):
        open_node(open_store(tmp_path / "plain"), "plain")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"{not json", r"zarr.json is not valid JSON"),
        (b'{"zarr_format": 2, "node_type": "group"}', r"not a zarr v3 document"),
        (b"[3]", r"not a zarr v3 document"),
        (b'{"zarr_format": 3, "node_type": "table"}', r"node_type 'table'"),
        (b'{"zarr_format": 3, "node_type": "array", "shape": [2]}', r"not valid zarr v3"),
    ],
)
def test_a_bad_document_is_a_metadata_error(tmp_path: Path, document: bytes, expected: str) -> None:
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_bytes(document)
    with pytest.raises(MetadataError, match=expected) as info:
        open_node(open_store(tmp_path / "bad.zarr"), "bad.zarr")
    assert "bad.zarr" in str(info.value)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_groups_arrays_open_together(tmp_path: Path, zarr_format: int) -> None:
    _group_with_arrays(tmp_path / "g.zarr", zarr_format)
    (tmp_path / "g.zarr" / "extra.json").write_bytes(b"{}")
    group = open_node(open_store(tmp_path / "g.zarr"), "g.zarr")
    assert isinstance(group, zarr.Group)
    arrays, others = read_arrays(group, ["1", "missing", "0"], "g", also=["extra.json", "none"])
    assert others == [b"{}", None]
    first, missing, zeroth = arrays
    assert missing is None
    assert first is not None
    assert zeroth is not None
    assert first.shape == (4, 4)
    assert zeroth.shape == (8, 8)
    np.testing.assert_array_equal(zeroth[...], np.arange(64, dtype="uint16").reshape(8, 8))


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_group_where_an_array_should_be(tmp_path: Path, zarr_format: int) -> None:
    _group_with_arrays(tmp_path / "g.zarr", zarr_format)
    group = open_node(open_store(tmp_path / "g.zarr"), "g.zarr")
    assert isinstance(group, zarr.Group)
    with pytest.raises(MetadataError, match=r"g: 'sub' is a group, where an array was expected"):
        read_arrays(group, ["0", "sub"], "g")


def test_arrays_of_a_nested_group(tmp_path: Path) -> None:
    root = zarr.open_group(tmp_path / "r.zarr", mode="w", zarr_format=3)
    inner = root.create_group("series/0")
    inner.create_array("s0", shape=(2,), dtype="uint8")[...] = [7, 9]
    nested = open_node(open_store(tmp_path / "r.zarr"), "r")["series/0"]
    assert isinstance(nested, zarr.Group)
    assert array_key(nested, "s0") == "series/0/s0/zarr.json"
    (array,), _ = read_arrays(nested, ["s0"], "r")
    assert array is not None
    np.testing.assert_array_equal(array[...], [7, 9])


@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_consolidated_metadata_needs_no_reads(tmp_path: Path) -> None:
    _group_with_arrays(tmp_path / "g.zarr", 3)
    zarr.consolidate_metadata(tmp_path / "g.zarr")
    group = open_node(open_store(tmp_path / "g.zarr"), "g.zarr")
    assert isinstance(group, zarr.Group)
    (tmp_path / "g.zarr" / "0" / "zarr.json").unlink()  # only the consolidated copy is left
    (array,), _ = read_arrays(group, ["0"], "g")
    assert array is not None
    assert array.shape == (8, 8)
