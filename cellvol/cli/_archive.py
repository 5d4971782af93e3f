"""The archive commands: ``verify``, ``pack`` into a ``.ozx``, ``unpack``, and ``crate``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from cellvol.cli._app import app, command_options, spell_option, storage_options_of
from cellvol.cli._display import (
    console,
    print_verify_report,
    progress_bar,
    report,
    report_bug,
)
from cellvol.errors import CellvolError, InvalidInputError
from cellvol.formats._ozx import pack as pack_image
from cellvol.formats._ozx import unpack as unpack_archive
from cellvol.integrity import verify as verify_image
from cellvol.progress import ProgressEvent
from cellvol.write._digests import refresh_crate


@app.command()
def pack(
    image: Annotated[str, typer.Argument(help="An OME-Zarr image: local path or s3:// URL.")],
    out: Annotated[Path, typer.Argument(help="The zipped OME-Zarr to write (name ends .ozx).")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for IMAGE.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Pack an image into one zipped OME-Zarr file (.ozx, RFC-9), readable where it lies."""
    options = storage_options_of(endpoint_url, anon)
    written = pack_image(image, out, overwrite=overwrite, storage_options=options)
    console.print(f"Wrote {written} ({written.stat().st_size:,} bytes).")


@app.command()
def crate(
    image: Annotated[str, typer.Argument(help="An OME-Zarr image: local path or s3:// URL.")],
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for IMAGE.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Write (or refresh) IMAGE's ro-crate-metadata.json from what the image stores."""
    written = refresh_crate(image, storage_options_of(endpoint_url, anon))
    console.print(f"Wrote {written}.")


@app.command()
def unpack(
    archive: Annotated[
        str, typer.Argument(help="A zipped OME-Zarr (.ozx): local path, s3:// or http(s)://.")
    ],
    out: Annotated[Path, typer.Argument(help="The directory to create.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for ARCHIVE.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Unpack a zipped OME-Zarr (.ozx) into a directory store."""
    options = storage_options_of(endpoint_url, anon)
    written = unpack_archive(archive, out, overwrite=overwrite, storage_options=options)
    console.print(f"Wrote {written}.")


@app.command()
def verify(
    path_or_url: Annotated[str, typer.Argument(help="Local path, s3:// or http(s):// URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workers: Annotated[int | None, typer.Option(help="Threads (default: one per core).")] = None,
    zarr_checksum: Annotated[
        bool,
        typer.Option(
            "--zarr-checksum",
            help="Also compute the DANDI zarr checksum of every object (MD5s, read once).",
        ),
    ] = False,
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3 endpoint, for S3-compatible object stores.")
    ] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
    deep: Annotated[
        bool,
        typer.Option(help="Also recompute every coarser level from the level below and compare."),
    ] = False,
    deep_sample: Annotated[
        float | None,
        typer.Option(
            metavar="FRACTION",
            help="Like --deep, on a random FRACTION of each level's shards (at least one).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of --deep-sample's choice.")] = None,
) -> None:
    """Check a stored image is whole: every object present, unchanged and passing its CRC32Cs.

    A .ozx archive is checked too: each entry's ZIP CRC-32, and RFC-9's layout.

    Exits 0 when the image is intact, 1 when damage was found, 2 when the check could not run.
    """
    try:
        if deep and deep_sample is not None:
            raise InvalidInputError("give --deep or --deep-sample, not both")
        hidden = as_json or not console.is_terminal
        with progress_bar(_verify_stage, "objects", hidden=hidden) as bar:
            storage_options = storage_options_of(endpoint_url, anon)
            found = verify_image(
                path_or_url,
                storage_options,
                workers=workers,
                progress=bar,
                deep=deep if deep_sample is None else deep_sample,
                seed=seed,
                zarr_checksum=zarr_checksum,
            )
    except (CellvolError, OSError) as exc:
        # No verdict at all, which is not damage found: a status of its own, so scripts can tell.
        spell = functools.partial(spell_option, command_options(["verify"]))
        hint = exc.hint_as(spell) if isinstance(exc, CellvolError) else None
        report(str(getattr(exc, "message", exc)) or type(exc).__name__, hint)
        raise typer.Exit(2) from None
    except Exception as exc:  # a bug: still no verdict, so not the status of damage found
        report_bug(exc)
        raise typer.Exit(2) from None
    print_verify_report(found, as_json=as_json)
    raise typer.Exit(0 if found.intact else 1)


def _verify_stage(event: ProgressEvent) -> str:
    # The checksum pass reads every level from 0; the deep pass recomputes levels from 1.
    return f"image {event.stage}" if 0 in event.levels else f"pyramid, stage {event.stage}"
