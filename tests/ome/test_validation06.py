"""OME-NGFF 0.6: cellvol's validator agrees with the specification's conformance cases.

The cases are the specification repository's own (``../shared/data/ngff-spec-0.6/tests``):
single attribute documents and metadata-only zarr hierarchies, valid and invalid, ``spec`` and
``strict``. Ten zarr hierarchies cannot agree with any reading of the released schemas: they
still write ``input``/``output`` as bare strings, a form the schemas refuse and the attribute
case ``invalid_multiscale_transform_input_output`` marks invalid. They are the one list of
expected disagreements, and the tests check that this, and only this, is why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ome06_helpers import (
    SPEC06,
    STALE_STRING_REFERENCES,
    image06,
    needs_spec06,
    space,
    write_group,
)

from cellvol.ome._hierarchy import validate as validate_path
from cellvol.ome._validation import detect, validate

needs_cases = needs_spec06(SPEC06 / "tests", "the 0.6 conformance cases")


def conformance_cases() -> list:
    cases = []
    for mode, pattern in (("attributes", "*.json"), ("zarr", "*.ome.zarr")):
        base = SPEC06 / "tests" / mode
        for path in sorted(base.rglob(pattern)):
            name = f"{mode}/" + str(path.relative_to(base)).split(".", 1)[0]
            cases.append(pytest.param(name, path, id=name))
    return cases


CASES = conformance_cases() if (SPEC06 / "tests").is_dir() else []


@needs_cases
@pytest.mark.parametrize(("name", "path"), CASES)
def test_agrees_with_every_conformance_case(name: str, path: Path) -> None:
    strictness, validity = name.split("/")[1:3]
    found = validate_path(path, strict=strictness == "strict")
    expected = validity == "valid"
    if name in STALE_STRING_REFERENCES:
        assert not found.valid
        assert {p.message.split(",")[0] for p in found.problems} <= {
            'must be an object such as {"path": ...}',
            'must be an object such as {"name": ...}',
        }, [str(p) for p in found.problems]
        return
    assert found.valid == expected, [str(p) for p in found.problems]


@needs_cases
def test_the_stale_cases_break_only_the_reference_form() -> None:
    # Rewritten with object references, each stale case is valid: the list hides nothing else.
    for name in sorted(STALE_STRING_REFERENCES):
        path = SPEC06 / "tests" / "zarr" / (name.removeprefix("zarr/") + ".ome.zarr")
        attributes = json.loads((path / "zarr.json").read_text())["attributes"]
        for multiscale in attributes["ome"]["multiscales"]:
            for holder in [*multiscale["datasets"], multiscale]:
                for transform in holder.get("coordinateTransformations", []):
                    for key, field in (("input", "path"), ("output", "name")):
                        if isinstance(transform.get(key), str):
                            wanted = field if holder is not multiscale else "name"
                            transform[key] = {wanted: transform[key]}
        strict = name.split("/")[1] == "strict"
        assert validate(attributes, strict=strict) == [], name


@pytest.fixture(scope="module")
def released_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")

    def load(top: str):
        registry = referencing.Registry()
        for path in (SPEC06 / "schemas").glob("*.schema"):
            registry = referencing.Resource.from_contents(json.loads(path.read_text())) @ registry
        schema = json.loads((SPEC06 / "schemas" / f"{top}.schema").read_text())
        return jsonschema.Draft202012Validator(schema, registry=registry)

    return {"spec": load("ome_zarr"), "strict": load("strict_ome_zarr")}


@needs_cases
@pytest.mark.parametrize(("name", "path"), CASES)
def test_the_released_schemas_disagree_on_the_same_cases_only(
    released_schemas, name: str, path: Path
) -> None:
    # The schemas are the reference: where they and a case disagree, the case is stale.
    strictness, validity = name.split("/")[1:3]
    document = path.read_text() if path.is_file() else (path / "zarr.json").read_text()
    try:
        attributes = json.loads(document)
    except ValueError:
        assert validity == "invalid"  # two hierarchies hold broken JSON on purpose
        return
    attributes = attributes.get("attributes", attributes)
    attributes.pop("_conformance", None)
    agrees = released_schemas[strictness].is_valid(attributes) == (validity == "valid")
    assert agrees == (name not in STALE_STRING_REFERENCES)


# -- rules beyond the schemas, on small documents ----------------------------------------------


def messages(document: dict, **kwargs) -> list[str]:
    return [str(p) for p in validate(document, **kwargs)]


def test_a_good_06_image_is_detected_and_has_no_problems() -> None:
    assert detect(image06()) == ("image", "0.6")
    assert validate(image06(), strict=True, notes=True) == []


def test_a_dataset_must_end_in_a_coordinate_system_that_exists() -> None:
    document = image06()
    transform = document["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    transform["output"] = {"name": "world"}
    assert any("no coordinate system 'world'" in m for m in messages(document))


def test_an_affine_needs_one_column_per_input_axis_plus_one() -> None:
    affine = {
        "type": "affine",
        "affine": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],  # 2-D shape for a 3-D system
        "input": {"name": "physical"},
        "output": {"name": "registered"},
    }
    document = image06(
        coordinateSystems=[
            {"name": "registered", "axes": space("z", "y", "x")},
            {"name": "physical", "axes": space("z", "y", "x")},
        ],
        coordinateTransformations=[affine],
    )
    assert any("3 input axes need 4" in m for m in messages(document))
    affine["affine"] = [[1, 0, 0, 5], [0, 1, 0, 6], [0, 0, 1, 7]]
    assert messages(document, notes=True) == []


def test_a_sequence_may_not_hold_a_sequence() -> None:
    inner = {"type": "sequence", "transformations": [{"type": "identity"}]}
    document = image06(
        coordinateSystems=[
            {"name": "other", "axes": space("z", "y", "x")},
            {"name": "physical", "axes": space("z", "y", "x")},
        ],
        coordinateTransformations=[
            {
                "type": "sequence",
                "transformations": [inner],
                "input": {"name": "physical"},
                "output": {"name": "other"},
            }
        ],
    )
    assert any("may not be part of another sequence" in m for m in messages(document))


def test_a_dataset_transformation_is_only_scale_identity_or_scale_and_translation() -> None:
    document = image06()
    transforms = document["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    transforms[0] = {
        "type": "sequence",
        "transformations": [
            {"type": "scale", "scale": [1, 1, 1]},
            {"type": "scale", "scale": [1, 1, 1]},
        ],
        "input": {"path": "0"},
        "output": {"name": "physical"},
    }
    assert any("one scale and one translation" in m for m in messages(document))


def test_a_rule_the_conformance_documents_break_is_a_note_not_a_problem() -> None:
    document = image06()
    transform = document["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    transform["scale"] = [2, 2]  # one value short: the spec's own mismatch_axes_units does this
    assert validate(document) == []
    notes = validate(document, notes=True)
    assert [n.note for n in notes] == [True]
    assert "scale has 2 values for 3 axes" in notes[0].message


def scene(output: dict) -> dict:
    return {
        "ome": {
            "version": "0.6",
            "scene": {
                "coordinateTransformations": [
                    {
                        "type": "affine",
                        "affine": [[1, 0, 0, 10], [0, 1, 0, 20], [0, 0, 1, 30]],
                        "input": {"path": "lm.ome.zarr", "name": "physical"},
                        "output": output,
                    }
                ]
            },
        }
    }


def test_a_scene_reference_is_followed_into_the_image_it_names(tmp_path: Path) -> None:
    root = tmp_path / "pair.zarr"
    write_group(root / "lm.ome.zarr", image06())
    write_group(root / "em.ome.zarr", image06())
    write_group(root, scene({"path": "em.ome.zarr", "name": "physical"}))
    found = validate_path(root)
    assert found.valid, found.problems
    assert (found.kind, found.version) == ("scene", "0.6")

    write_group(root, scene({"path": "em.ome.zarr", "name": "world"}))
    found = validate_path(root)
    assert not found.valid
    assert "the group at 'em.ome.zarr' has no coordinate system 'world'" in found.message

    write_group(root, scene({"path": "missing.ome.zarr", "name": "physical"}))
    assert "no OME-Zarr group at 'missing.ome.zarr'" in validate_path(root).message


def test_a_scene_reference_to_images_beside_it_is_followed(tmp_path: Path) -> None:
    write_group(tmp_path / "lm.ome.zarr", image06())
    write_group(
        tmp_path / "em.ome.zarr",
        image06(coordinateSystems=[{"name": "em", "axes": space("z", "y", "x")}]),
    )
    document = scene({"path": "../em.ome.zarr", "name": "physical"})
    document["ome"]["scene"]["coordinateTransformations"][0]["input"]["path"] = "../lm.ome.zarr"
    root = write_group(tmp_path / "pair.zarr", document)
    # em.ome.zarr names its system 'em' (and its dataset output is then wrong too, by design).
    assert "has no coordinate system 'physical'" in validate_path(root).message


def test_a_scene_name_without_path_must_be_one_of_its_own_systems(tmp_path: Path) -> None:
    document = scene({"name": "aligned"})
    assert any("no coordinate system 'aligned' here" in m for m in messages(document))
    document["ome"]["scene"]["coordinateSystems"] = [
        {"name": "aligned", "axes": space("z", "y", "x")}
    ]
    assert messages(document) == []


def test_a_level_array_must_have_one_dimension_per_axis(tmp_path: Path) -> None:
    root = write_group(tmp_path / "em.ome.zarr", image06())
    array = {"zarr_format": 3, "node_type": "array", "shape": [4, 4], "data_type": "uint8"}
    (root / "0").mkdir()
    (root / "0" / "zarr.json").write_text(json.dumps(array))
    found = validate_path(root)
    assert not found.valid
    assert "the array '0' has 2 dimensions; the axes ['z', 'y', 'x'] name 3" in found.message
    array["shape"] = [4, 4, 4]
    (root / "0" / "zarr.json").write_text(json.dumps(array))
    assert validate_path(root).valid
