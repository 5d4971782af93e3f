"""What the OME-NGFF 0.6 tests share: where the spec's cases are, and small 0.6 documents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import SHARED_DATA

SPEC06 = SHARED_DATA / "ngff-spec-0.6"


def needs_spec06(part: Path, what: str) -> pytest.MarkDecorator:
    """Skip, naming ``what`` is missing, where the spec's ``part`` is absent.

    CI sets CELLVOL_REQUIRE_SPEC06=1 where ../shared/data is present: there a missing part
    fails the run (at collection) instead of skipping the conformance tests unseen.
    """
    present = part.exists()
    if not present and os.environ.get("CELLVOL_REQUIRE_SPEC06") == "1":
        pytest.fail(f"CELLVOL_REQUIRE_SPEC06=1 but {part} is missing ({what})", pytrace=False)
    return pytest.mark.skipif(
        not present, reason=f"{part} not found: {what} lives beside the project in CI"
    )


#: Zarr cases written before input/output became objects (see the module notes).
STALE_STRING_REFERENCES = frozenset(
    f"zarr/{name}"
    for name in (
        "spec/valid/image/custom_type_axes",
        "spec/valid/image/invalid_axis_units",
        "spec/valid/image/mismatch_axes_units",
        "spec/valid/image/missing_name",
        "spec/valid/image/untyped_axes",
        "strict/valid/image/image",
        "strict/valid/image/image_metadata",
        "strict/valid/image/image_omero",
        "strict/valid/image/multiscales_example",
        "strict/valid/image/multiscales_transformations",
    )
)


def space(*names: str, unit: str = "nanometer") -> list[dict]:
    return [{"name": n, "type": "space", "unit": unit} for n in names]


def image06(**changes) -> dict:
    multiscale = {
        "name": "em",
        "type": "mean",
        "metadata": {},
        "coordinateSystems": [{"name": "physical", "axes": space("z", "y", "x")}],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {
                        "type": "scale",
                        "scale": [4, 2, 2],
                        "input": {"path": "0"},
                        "output": {"name": "physical"},
                    }
                ],
            }
        ],
    }
    multiscale.update(changes)
    return {"ome": {"version": "0.6", "multiscales": [multiscale]}}


def write_group(path: Path, attributes: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    document = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    (path / "zarr.json").write_text(json.dumps(document))
    return path
