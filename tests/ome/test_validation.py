"""cellvol's OME-NGFF validator agrees with the specification's own conformance suites."""

import json
import re
from pathlib import Path

import pytest
from support import SHARED_DATA

from cellvol.errors import MetadataError
from cellvol.ome._validation import check, detect, validate

SPEC = SHARED_DATA / "ngff-spec"
needs_spec = pytest.mark.skipif(
    not SPEC.is_dir(),
    reason="../shared/data/ngff-spec not found: the spec conformance suites live beside the "
    "project in CI",
)


def suite_cases() -> list:
    cases = []
    for version in ("0.4", "0.5"):
        for suite in sorted((SPEC / version / "tests").glob("*_suite.json")):
            name = suite.name.removesuffix("_suite.json")
            for index, case in enumerate(json.loads(suite.read_text())["tests"]):
                label = f"{version}-{name}-{index}-{case.get('formerly', '').replace('/', ':')}"
                cases.append(pytest.param(version, name, case, id=label))
    return cases


CASES = suite_cases() if SPEC.is_dir() else []


@needs_spec
@pytest.mark.parametrize(("version", "suite", "case"), CASES)
def test_agrees_with_conformance_suite(version: str, suite: str, case: dict) -> None:
    problems = validate(
        case["data"],
        kind=suite.removeprefix("strict_"),
        version=version,
        strict=suite.startswith("strict_"),
    )
    assert (not problems) == case["valid"], [str(p) for p in problems]


@pytest.fixture(scope="module")
def schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    pytest.importorskip("referencing.jsonschema")
    resources = []
    for path in SPEC.glob("*/schemas/*.schema"):
        document = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(
            document, default_specification=referencing.jsonschema.DRAFT202012
        )
        resources.append((document["$id"], resource))
    registry = referencing.Registry().with_resources(resources)

    def make(version: str, suite: str):
        schema = json.loads((SPEC / version / "schemas" / f"{suite}.schema").read_text())
        return jsonschema.Draft202012Validator(schema, registry=registry)

    return make


@needs_spec
@pytest.mark.parametrize(("version", "suite", "case"), CASES)
def test_the_official_schemas_agree_with_the_suites(schema_validator, version, suite, case) -> None:
    # Proves the suites say what we think; rules beyond JSON Schema are where schemas fall short.
    valid = schema_validator(version, suite).is_valid(case["data"])
    if valid != case["valid"]:
        pytest.xfail(f"the {version} {suite} schema alone cannot express this case's rule")
    assert valid == case["valid"]


@needs_spec
@pytest.mark.parametrize(
    "example",
    sorted(p for p in SPEC.glob("*/examples/*/*.json") if p.name != ".config.json")
    if SPEC.is_dir()
    else [],
    ids=lambda p: f"{p.parts[-4]}-{p.parent.name}-{p.name}",
)
def test_specification_examples_are_valid(example: Path) -> None:
    config = json.loads((example.parent / ".config.json").read_text())
    suite = Path(config["schema"]).stem
    if suite in ("bf2raw", "ome"):
        pytest.skip(f"{suite} collections are read by cellvol, not validated")
    version = example.parts[-4]
    # Examples may carry // comments (not JSON) and, for 0.5, the whole zarr.json document.
    data = json.loads("\n".join(strip_comment(line) for line in example.read_text().splitlines()))
    data = data.get("attributes", data)
    problems = validate(
        data,
        kind=suite.removeprefix("strict_"),
        version=version,
        strict=suite.startswith("strict_"),
    )
    assert problems == [], [str(p) for p in problems]


def strip_comment(line: str) -> str:
    """Drop a trailing // comment that is not inside a JSON string."""
    for match in re.finditer("//", line):
        if line[: match.start()].count('"') % 2 == 0:
            return line[: match.start()]
    return line


def image(**changes) -> dict:
    multiscale = {
        "name": "x",
        "type": "mean",
        "metadata": {},
        "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}
        ],
    }
    multiscale.update(changes)
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def test_a_good_image_has_no_problems() -> None:
    assert validate(image(), strict=True) == []


def test_duplicate_axis_names_are_named() -> None:
    axes = [
        {"name": "y", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    problems = validate(image(axes=axes))
    assert any(
        p.path == "/ome/multiscales/0/axes/1/name" and "'y' is used twice" in p.message
        for p in problems
    )


def test_scale_of_wrong_length_says_how_many() -> None:
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]
    (problem,) = validate(image(datasets=datasets))
    assert problem.path.endswith("/coordinateTransformations/0/scale")
    assert "2 values for 3 axes" in problem.message


def test_translation_before_scale() -> None:
    transforms = [
        {"type": "translation", "translation": [0, 0, 0]},
        {"type": "scale", "scale": [1, 1, 1]},
    ]
    problems = validate(image(datasets=[{"path": "0", "coordinateTransformations": transforms}]))
    assert [p.message for p in problems] == ["the 'scale' must come first"]


def test_unknown_unit_is_a_recommendation_only() -> None:
    axes = [{"name": n, "type": "space", "unit": "furlong"} for n in "zyx"]
    assert validate(image(axes=axes)) == []
    problems = validate(image(axes=axes), strict=True)
    assert [p.path for p in problems] == [f"/ome/multiscales/0/axes/{i}/unit" for i in range(3)]
    assert all(
        p.strict and "'furlong' is not a UDUNITS-2 space unit" in p.message for p in problems
    )


def test_check_raises_with_every_problem() -> None:
    broken = image(axes=[{"name": "x", "type": "space"}])
    with pytest.raises(MetadataError, match=r"(?s)invalid:.*/ome/multiscales/0/axes.*2 to 5 axes"):
        check(broken)


def test_detect() -> None:
    assert detect(image()) == ("image", "0.5")
    assert detect({"multiscales": []}) == ("image", "0.4")
    assert detect({"ome": {"version": "0.5", "image-label": {}, "multiscales": []}}) == (
        "label",
        "0.5",
    )
    assert detect({"plate": {}}) == ("plate", "0.4")
    assert detect({"ome": {"well": {}}}) == ("well", "0.5")
    assert detect({"something": "else"}) is None


def test_version_mismatch() -> None:
    document = image()
    document["ome"]["version"] = "0.4"
    assert any(p.path == "/ome/version" for p in validate(document, version="0.5"))
