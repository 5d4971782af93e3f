"""The ``export`` command: a region of a level to MRC or TIFF, or labels to EMDB-SFF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellvol.cli._app import app, storage_options_of
from cellvol.cli._display import console


@app.command()
def export(
    image: Annotated[
        str, typer.Argument(help="An OME-Zarr image: local path, s3:// or http(s)://.")
    ],
    out: Annotated[
        Path,
        typer.Argument(
            help="File to write: .mrc/.map/.rec or .tif/.tiff; with --labels, EMDB-SFF "
            ".sff (XML) or .hff/.h5 (HDF5)."
        ),
    ],
    level: Annotated[int, typer.Option(help="Pyramid level (0 = full resolution).")] = 0,
    region: Annotated[
        str | None, typer.Option(help="Region z0:z1,y0:y1,x0:x1 of that level (default: all).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    imod_unsigned: Annotated[
        bool,
        typer.Option(
            "--imod-unsigned",
            help="MRC: write uint8 as mode 0 marked unsigned by IMOD's stamp (old IMOD "
            "convention) instead of mode 6; readers other than IMOD see signed bytes.",
        ),
    ] = False,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Write these labels of IMAGE (full resolution, with their segments' "
            "annotations) as an EMDB-SFF segmentation."
        ),
    ] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for IMAGE.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
    channel: Annotated[
        str | None,
        typer.Option(help="Only this channel (name or index); default every one (TIFF only)."),
    ] = None,
    t: Annotated[int, typer.Option("--t", help="Time point of --channel.")] = 0,
) -> None:
    """Write a region of a pyramid level to an MRC or TIFF file, or labels to EMDB-SFF."""
    from cellvol.formats._export import export as export_region

    if labels is not None:
        if level != 0 or region is not None:
            raise typer.BadParameter("--level and --region do not apply with --labels")
        from cellvol.labels._sff import export_sff

        written = export_sff(
            image,
            labels,
            out,
            overwrite=overwrite,
            storage_options=storage_options_of(endpoint_url, anon),
        )
        console.print(f"Wrote {written} ({written.stat().st_size:,} bytes).")
        return

    written = export_region(
        image,
        out,
        level=level,
        region=region,
        overwrite=overwrite,
        imod_unsigned=imod_unsigned,
        storage_options=storage_options_of(endpoint_url, anon),
        channel=int(channel) if channel is not None and channel.isdigit() else channel,
        t=t,
    )
    console.print(f"Wrote {written} ({written.stat().st_size:,} bytes).")
