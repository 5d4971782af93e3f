"""Hostile or damaged metadata: one InvalidInputError naming the file and the field (#22).

Text where a number belongs, an undecodable escape, a link that loops, NaN and absurd voxel
sizes: each is refused by the reader, never passed on as a parser's own error, and never as
a value no JSON reader can parse.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
h5py = pytest.importorskip("h5py")
mrcfile = pytest.importorskip("mrcfile")

from cellvol.errors import CellvolWarning, InvalidInputError  # noqa: E402
from cellvol.formats._ingest import convert  # noqa: E402
from cellvol.formats._open import open_source  # noqa: E402
from cellvol.units import VoxelSize  # noqa: E402

DATA = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)


def ome_tiff(path: Path, **sizes: object) -> str:
    metadata = {"axes": "ZYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0, "PhysicalSizeZ": 1.0}
    tifffile.imwrite(path, DATA, ome=True, metadata=metadata | sizes)
    return str(path)


def imagej_tiff(path: Path, resolution: tuple[float, float] = (1.0, 1.0), **meta: object) -> str:
    metadata = {"axes": "ZYX", "unit": "um", "spacing": 1.0} | meta
    tifffile.imwrite(path, DATA, imagej=True, resolution=resolution, metadata=metadata)
    return str(path)


def hdf5(path: Path, **attributes: object) -> str:
    with h5py.File(path, "w") as f:
        f["v"] = DATA
        for key, value in attributes.items():
            f["v"].attrs[key] = value
    return str(path)


def mrc(path: Path, cell: tuple[float, float, float] = (80.0, 80.0, 40.0), **origin: float) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mrcfile vs numpy 2.5
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(DATA.astype(np.int16))
            m.header.cella = cell
            for axis, value in origin.items():
                m.header.origin[axis] = value
    return str(path)


def refused(src: str, *fields: str) -> str:
    with pytest.raises(InvalidInputError) as caught:
        open_source(src)
    message = str(caught.value)
    assert message.startswith(src.split(":/")[0]), message
    for field in fields:
        assert field in message, message
    return message


def test_ome_tiff_physical_size_that_is_not_a_number(tmp_path: Path) -> None:
    refused(ome_tiff(tmp_path / "a.ome.tif", PhysicalSizeX="abc"), "PhysicalSizeX", "'abc'")


@pytest.mark.parametrize("value", ["nan", "inf", "-2", "0"])
def test_ome_tiff_physical_size_not_finite_or_not_positive(tmp_path: Path, value: str) -> None:
    refused(ome_tiff(tmp_path / "a.ome.tif", PhysicalSizeY=value), "PhysicalSizeY")


def test_imagej_spacing_that_is_not_a_number(tmp_path: Path) -> None:
    refused(imagej_tiff(tmp_path / "a.tif", spacing="abc"), "ImageJ spacing", "'abc'")


def test_imagej_spacing_nan(tmp_path: Path) -> None:
    refused(imagej_tiff(tmp_path / "a.tif", spacing="nan"), "ImageJ spacing")


def test_imagej_unit_with_a_broken_escape(tmp_path: Path) -> None:
    refused(imagej_tiff(tmp_path / "a.tif", unit="\\x"), "ImageJ unit")


def test_imagej_unit_unknown_is_still_unrecorded(tmp_path: Path) -> None:
    assert open_source(imagej_tiff(tmp_path / "a.tif", unit="inch")).voxel_size is None


@pytest.mark.parametrize("links", [{"a": "/a"}, {"a": "/b", "b": "/a"}])
def test_hdf5_soft_link_loop(tmp_path: Path, links: dict[str, str]) -> None:
    path = tmp_path / "loop.h5"
    with h5py.File(path, "w") as f:
        f["real"] = DATA
        for name, target in links.items():
            f[name] = h5py.SoftLink(target)
    refused(f"{path}:/a", "'/a'")
    assert open_source(path).details["dataset"] == "/real"  # loops are not followed in a search


@pytest.mark.parametrize("key", ["element_size_um", "resolution", "voxel_size"])
def test_hdf5_voxel_size_nan(tmp_path: Path, key: str) -> None:
    src = hdf5(tmp_path / "nan.h5", **{key: np.array([np.nan, 1, 1], np.float32)})
    refused(src, key, "nan.h5:/v")


def test_hdf5_voxel_size_as_text(tmp_path: Path) -> None:
    refused(hdf5(tmp_path / "t.h5", resolution=["abc", "1", "1"]), "resolution")


@pytest.mark.parametrize(
    ("resolution", "unit"), [([1e-41, 1, 1], "nanometer"), ([1e36, 1, 1], "nanometer")]
)
def test_hdf5_absurd_voxel_size(tmp_path: Path, resolution: list[float], unit: str) -> None:
    refused(hdf5(tmp_path / "x.h5", resolution=resolution, unit=unit), "resolution", "along z")


def test_mrc_cell_nan_is_refused(tmp_path: Path) -> None:
    refused(mrc(tmp_path / "c.mrc", cell=(80.0, float("nan"), 40.0)), "cella.y", "nan")


def test_mrc_absurd_voxel_size_is_refused(tmp_path: Path) -> None:
    refused(mrc(tmp_path / "c.mrc", cell=(1e36, 80.0, 40.0)), "cella", "along x")


def test_ome_tiff_absurd_voxel_size_is_refused(tmp_path: Path) -> None:
    src = ome_tiff(tmp_path / "a.ome.tif", PhysicalSizeX=1e36, PhysicalSizeXUnit="nm")
    refused(src, "PhysicalSize", "along x")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e38])
def test_mrc_unusable_origin_is_dropped_with_a_warning(tmp_path: Path, value: float) -> None:
    src = mrc(tmp_path / "o.mrc", x=value)
    with pytest.warns(CellvolWarning, match="origin"):
        source = open_source(src)
    assert source.origin is None  # the rule for an unset origin: nxstart... are 0
    assert source.voxel_size == VoxelSize(1, 1, 1, "nm")


def test_nan_in_a_header_never_reaches_zarr_json(tmp_path: Path) -> None:
    src = mrc(tmp_path / "o.mrc", x=float("nan"))
    with pytest.warns(CellvolWarning):
        convert(src, tmp_path / "o.zarr", digest=False)
    text = (tmp_path / "o.zarr" / "zarr.json").read_text()

    def refuse(word: str) -> None:
        raise ValueError(f"not JSON: {word}")

    document = json.loads(text, parse_constant=refuse)  # what a browser's JSON.parse accepts
    origin = document["attributes"]["cellvol"]["input"]["details"]["origin_angstrom"]
    assert origin[0] == "nan"
    assert origin[1:] == [0.0, 0.0]
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in origin)


def test_nan_in_other_hdf5_attributes_is_kept_as_a_word(tmp_path: Path) -> None:
    src = hdf5(tmp_path / "a.h5", resolution=[4.0, 1.0, 1.0], offset=np.array([np.nan, np.inf]))
    convert(src, tmp_path / "a.zarr", digest=False)
    text = (tmp_path / "a.zarr" / "zarr.json").read_text()
    assert "NaN" not in text
    assert "Infinity" not in text
    details = json.loads(text)["attributes"]["cellvol"]["input"]["details"]
    assert details["attributes"]["offset"] == ["nan", "inf"]
