"""Stored attributes are strict JSON: no NaN or Infinity can reach a zarr.json (#22)."""

import json

import pytest

from cellvol.errors import MetadataError
from cellvol.ome._manifest import dumps_record
from cellvol.ome._metadata import json_safe, provenance, stored_attributes


def test_non_finite_numbers_are_refused_where_attributes_are_stored() -> None:
    with pytest.raises(MetadataError, match="not JSON"):
        stored_attributes({"ome": {"scale": [float("nan")]}}, "x.zarr")
    assert stored_attributes({"a": (1, 2.5)}, "x.zarr") == {"a": [1, 2.5]}


def test_a_record_never_holds_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        dumps_record({"origin": [float("inf")]})


def test_a_file_s_nan_is_kept_as_a_word_in_the_provenance() -> None:
    record = provenance("f.mrc", {}, {"details": {"origin": (float("nan"), -float("inf"), 1.0)}})
    assert record["input"]["details"]["origin"] == ["nan", "-inf", 1.0]
    json.dumps(record, allow_nan=False)
    assert json_safe({"a": [float("inf"), "x", 2]}) == {"a": ["inf", "x", 2]}
