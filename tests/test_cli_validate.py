"""``cellvol validate``: its statuses, its output, and the spec's own harness running it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ome06_helpers import SPEC06, STALE_STRING_REFERENCES, image06, needs_spec06, write_group

HARNESS = SPEC06 / "conformance" / "ome_zarr_conformance.py"
needs_harness = needs_spec06(HARNESS, "the 0.6 specification's conformance harness")
CELLVOL = [str(Path(sys.executable).with_name("cellvol"))]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CELLVOL, *args], capture_output=True, text=True, timeout=120)


def test_a_valid_image_exits_0_and_says_what_it_is(tmp_path: Path) -> None:
    root = write_group(tmp_path / "em.ome.zarr", image06())
    result = run("validate", str(root))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "OME-Zarr 0.6 image" in result.stdout


def test_an_invalid_document_exits_1_and_json_names_the_problem(tmp_path: Path) -> None:
    document = image06()
    del document["ome"]["multiscales"][0]["coordinateSystems"]
    path = tmp_path / "attributes.json"
    path.write_text(json.dumps(document))
    result = run("validate", "--json", str(path))
    assert result.returncode == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is False
    assert "coordinateSystems" in verdict["message"]
    assert verdict["problems"][0]["path"] == "/ome/multiscales/0/coordinateSystems"
    assert run("validate", "--json", "--exit-zero", str(path)).returncode == 0


def test_a_missing_path_exits_2_with_one_error_line(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nothing.ome.zarr"))
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "nothing.ome.zarr" in result.stderr
    assert result.stdout == ""


def test_a_group_without_ome_metadata_is_invalid(tmp_path: Path) -> None:
    root = write_group(tmp_path / "plain.zarr", {"something": 1})
    result = run("validate", "--json", str(root))
    assert result.returncode == 1
    assert "no OME-NGFF metadata" in json.loads(result.stdout)["message"]


def harness(mode: str, *selection: str, dingus: list[str]) -> dict[str, str]:
    """Run the spec's conformance harness; each case's name to its status (pass, fail, error)."""
    result = subprocess.run(
        [sys.executable, str(HARNESS), mode, "--no-exit-code", *selection, "--", *dingus],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = dict(line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
    assert statuses, "the harness ran no case"
    return statuses


@needs_harness
@pytest.mark.parametrize(
    ("mode", "pattern"), [("attributes", "/scene/"), ("zarr", "^spec/(in)?valid/label/")]
)
def test_the_specification_harness_runs_cellvol_validate(mode: str, pattern: str) -> None:
    # A few cases through the harness itself: every case costs a process start, so the full
    # run is the slow test below; the in-process test in tests/ome checks every case's verdict.
    dingus = [*CELLVOL, "validate", "--json", "--exit-zero"]
    statuses = harness(mode, "--exclude-strict", "--include-pattern", pattern, dingus=dingus)
    assert len(statuses) >= 4
    assert {name for name, status in statuses.items() if status != "pass"} == set()
    assert any("/invalid/" in name for name in statuses)
    assert any("/valid/" in name for name in statuses)


@needs_harness
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["attributes", "zarr"])
def test_the_specification_harness_agrees_on_every_case(mode: str) -> None:
    # The harness calls the validator once per case and reads {"valid": ...} from its stdout;
    # any status but 0 counts as the validator failing to run, hence --exit-zero. Strict cases
    # are judged with the strict rules (the strict schemas'), the others without.
    dingus = [*CELLVOL, "validate", "--json", "--exit-zero"]
    statuses = harness(mode, "--exclude-strict", dingus=dingus)
    statuses |= harness(mode, "--include-pattern", "^strict/", dingus=[*dingus, "--strict"])
    expected = {f"{mode}/{name}" for name in statuses} & STALE_STRING_REFERENCES
    failed = {f"{mode}/{name}" for name, status in statuses.items() if status != "pass"}
    assert failed == expected
    assert len(statuses) == len(list((SPEC06 / "tests" / mode).rglob("*.json" if mode ==
                                     "attributes" else "*.ome.zarr")))  # fmt: skip
