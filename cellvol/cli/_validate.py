"""The ``validate`` command: whether a group's (or a document's) OME-NGFF metadata is valid.

Its ``--json`` output, ``{"valid": ..., "message": ...}``, is what the OME-NGFF conformance
harness reads from a validator it runs on each case (with ``--exit-zero``, since the harness
takes any other status for a validator that failed to run).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated

import typer
from rich.text import Text

from cellvol.cli._app import app, command_options, spell_option, storage_options_of
from cellvol.cli._display import console, report, report_bug
from cellvol.errors import CellvolError
from cellvol.ome._hierarchy import Validation
from cellvol.ome._hierarchy import validate as validate_metadata


@app.command()
def validate(
    path_or_url: Annotated[
        str,
        typer.Argument(
            help="A zarr group (local path, s3://, http(s)://, .ozx) or an attributes .json file."
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"valid", "message", "problems"} as JSON.')
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Also count the specification's recommendations.")
    ] = False,
    exit_zero: Annotated[
        bool,
        typer.Option("--exit-zero", help="Exit 0 whenever a verdict was reached, valid or not."),
    ] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for PATH_OR_URL.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Check OME-NGFF metadata (0.4, 0.5, 0.6) against the specification.

    For 0.6, references through a path to other groups (a scene's images) are followed.

    Exits 0 when valid, 1 when invalid, 2 when the check could not run.
    """
    try:
        found = validate_metadata(
            path_or_url, strict=strict, storage_options=storage_options_of(endpoint_url, anon)
        )
    except (CellvolError, OSError) as exc:
        spell = functools.partial(spell_option, command_options(["validate"]))
        hint = exc.hint_as(spell) if isinstance(exc, CellvolError) else None
        report(str(getattr(exc, "message", exc)) or type(exc).__name__, hint)
        raise typer.Exit(2) from None
    except Exception as exc:  # a bug: no verdict, so not the status of an invalid document
        report_bug(exc)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(found.as_json()))
    else:
        _print_validation(found)
    raise typer.Exit(0 if found.valid or exit_zero else 1)


def _print_validation(found: Validation) -> None:
    what = " ".join(
        part for part in ("OME-Zarr", found.version, found.kind) if part
    )  # e.g. "OME-Zarr 0.6 image"
    if found.valid:
        console.print(Text.assemble(("valid", "bold green"), f": {found.target} ({what})"))
    else:
        console.print(Text.assemble(("invalid", "bold red"), f": {found.target} ({what})"))
    for problem in found.problems:
        label = "recommended" if problem.strict else "problem"
        console.print(Text(f"  {label}: {problem}"), highlight=False)
    for note in found.notes:
        console.print(Text(f"  note: {note}"), highlight=False)
