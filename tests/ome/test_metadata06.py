"""Reading and writing OME-NGFF 0.6 attributes: placements, affines, and cellvol's own 0.6."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from ome06_helpers import image06, space

from cellvol.errors import MetadataError
from cellvol.ome._metadata import Dataset, image_attributes, read_multiscale
from cellvol.ome._validation import validate
from cellvol.units import VoxelSize


def with_level_transform(transform: dict) -> dict:
    document = image06()
    dataset = document["ome"]["multiscales"][0]["datasets"][0]
    dataset["coordinateTransformations"] = [
        {"input": {"path": "0"}, "output": {"name": "physical"}, **transform}
    ]
    return document


def test_a_sequence_of_scale_then_translation_places_the_level() -> None:
    document = with_level_transform(
        {
            "type": "sequence",
            "transformations": [
                {"type": "scale", "scale": [4, 2, 2]},
                {"type": "translation", "translation": [10, 20, 30]},
            ],
        }
    )
    multiscale = read_multiscale(document, where="img")
    assert multiscale is not None
    assert multiscale.version == "0.6"
    assert multiscale.axis_names == ("z", "y", "x")
    assert multiscale.default_system == "physical"
    assert multiscale.datasets[0] == Dataset("0", (4.0, 2.0, 2.0), (10.0, 20.0, 30.0))
    assert multiscale.voxel_size(0) == VoxelSize(4.0, 2.0, 2.0, "nanometer")


def test_a_translation_before_the_scale_is_scaled_with_it() -> None:
    document = with_level_transform(
        {
            "type": "sequence",
            "transformations": [
                {"type": "translation", "translation": [1, 2, 3]},
                {"type": "scale", "scale": [4, 2, 2]},
            ],
        }
    )
    level = read_multiscale(document, where="img").datasets[0]  # type: ignore[union-attr]
    assert level.translation == (4.0, 4.0, 6.0)  # (i + t) * s = i * s + t * s


def test_an_identity_is_a_unit_scale_and_draft_string_references_are_read() -> None:
    document = with_level_transform({"type": "identity"})
    transform = document["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    transform["input"], transform["output"] = "0", "physical"  # an RFC-5 draft's spelling
    level = read_multiscale(document, where="img").datasets[0]  # type: ignore[union-attr]
    assert (level.scale, level.translation, level.affine) == ((1.0,) * 3, (0.0,) * 3, None)


def registered(transform: dict) -> dict:
    return image06(
        coordinateSystems=[
            {"name": "em", "axes": space("z", "y", "x")},
            {"name": "physical", "axes": space("z", "y", "x")},
        ],
        coordinateTransformations=[
            {"input": {"name": "physical"}, "output": {"name": "em"}, **transform}
        ],
    )


def test_the_multiscale_affine_into_another_system_is_kept_and_exposed() -> None:
    rows = [[0.0, -1.0, 0.0, 5.0], [1.0, 0.0, 0.0, 6.0], [0.0, 0.0, 2.0, 7.0]]
    document = registered({"type": "affine", "affine": rows})
    assert validate(document, strict=True, notes=True) == []
    multiscale = read_multiscale(document, where="img")
    assert multiscale is not None
    expected = np.vstack([rows, [0, 0, 0, 1]])
    np.testing.assert_array_equal(multiscale.affine(), expected)
    np.testing.assert_array_equal(multiscale.affine("em"), expected)
    assert multiscale.affine("elsewhere") is None
    assert multiscale.transformations[0]["type"] == "affine"
    # The levels themselves stay a scale: the affine does not change their voxel size.
    assert multiscale.voxel_size(0) == VoxelSize(4.0, 2.0, 2.0, "nanometer")


def test_a_sequence_into_another_system_composes_to_one_affine() -> None:
    document = registered(
        {
            "type": "sequence",
            "transformations": [
                {"type": "scale", "scale": [2, 2, 2]},
                {"type": "mapAxis", "mapAxis": [2, 1, 0]},
                {"type": "translation", "translation": [1, 2, 3]},
            ],
        }
    )
    matrix = np.asarray(read_multiscale(document, where="img").affine())  # type: ignore[union-attr]
    point = np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_array_equal(matrix @ point, [6 + 1, 4 + 2, 2 + 3, 1])


def test_an_affine_kept_in_an_array_is_named_when_asked_for() -> None:
    document = registered({"type": "affine", "path": "registration"})
    multiscale = read_multiscale(document, where="img")
    with pytest.raises(MetadataError, match="stored in the array 'registration'"):
        multiscale.affine()  # type: ignore[union-attr]


def test_a_level_placed_by_a_rotation_keeps_its_affine_and_says_why_it_has_no_voxel_size() -> None:
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rotation = [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
    document = with_level_transform(
        {
            "type": "sequence",
            "transformations": [
                {"type": "scale", "scale": [4, 2, 2]},
                {"type": "rotation", "rotation": rotation},
            ],
        }
    )
    multiscale = read_multiscale(document, where="img")
    assert multiscale is not None
    level = multiscale.datasets[0]
    assert level.affine is not None
    np.testing.assert_allclose(level.scale, (4.0, 2.0, 2.0))  # the length of one step per axis
    np.testing.assert_allclose(np.asarray(level.affine)[:3, :3], np.asarray(rotation) * [4, 2, 2])
    with pytest.raises(MetadataError, match="rotates or shears"):
        multiscale.voxel_size(0)


def test_cellvol_writes_06_that_its_validator_and_ome_zarr_models_accept() -> None:
    from ome_zarr_models.v06.image import ImageAttrs

    levels = [
        Dataset("0", (4.0, 2.0, 2.0), (10.0, 20.0, 30.0)),
        Dataset("1", (8.0, 4.0, 4.0), (12.0, 21.0, 31.0)),
    ]
    attributes = image_attributes(
        levels,
        "nm",
        name="em",
        method="mean",
        provenance_record={"source": "test"},
        ome_version="0.6",
    )
    assert attributes["ome"]["version"] == "0.6"
    assert validate(attributes, strict=True, notes=True) == []
    ImageAttrs.model_validate(attributes["ome"])
    multiscale = read_multiscale(copy.deepcopy(attributes), where="written")
    assert multiscale is not None
    assert multiscale.datasets == tuple(levels)
    assert multiscale.axes[0].unit == "nanometer"


def test_an_unknown_version_to_write_is_refused() -> None:
    with pytest.raises(MetadataError, match=r"0\.5 or 0\.6"):
        image_attributes(
            [Dataset("0", (1.0,) * 3, (0.0,) * 3)], "nm", name="x", method="mean",
            provenance_record={}, ome_version="0.7",
        )  # fmt: skip


@pytest.mark.parametrize("value", [1, True, "scale", {"type": "scale"}])
def test_multiscale_transformations_that_are_no_list_are_a_metadata_error(value) -> None:
    document = image06(coordinateTransformations=value)
    with pytest.raises(MetadataError, match=r"img: multiscales\[0\].coordinateTransformations"):
        read_multiscale(document, where="img")


def test_a_homogeneous_affine_must_end_in_0_0_0_1() -> None:
    rows = [[4, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]
    good = read_multiscale(with_level_transform({"type": "affine", "affine": rows}), where="img")
    assert good is not None
    assert good.datasets[0].scale == (4.0, 2.0, 2.0)
    rows[-1] = [0, 0, 1, 1]  # a projective row: no affine map
    with pytest.raises(MetadataError, match=r"last row must be \[0.0, 0.0, 0.0, 1.0\]"):
        read_multiscale(with_level_transform({"type": "affine", "affine": rows}), where="img")
