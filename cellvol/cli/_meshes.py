"""The ``meshes`` command: compute (or recompute) the segment surfaces of existing labels."""

from __future__ import annotations

from typing import Annotated

import typer

from cellvol.cli._app import app, storage_options_of
from cellvol.cli._display import console
from cellvol.labels._meshes import DEFAULT_TRIANGLE_BUDGET


@app.command()
def meshes(
    image: Annotated[str, typer.Argument(help="The OME-Zarr image: local path or s3:// URL.")],
    labels: Annotated[str, typer.Option(help="The label image's name.")],
    triangle_budget: Annotated[
        int, typer.Option(help="The most triangles one segment's surface may have.")
    ] = DEFAULT_TRIANGLE_BUDGET,
    smoothing: Annotated[
        bool, typer.Option(help="Smooth the surfaces (Taubin, volume-keeping).")
    ] = True,
    force: Annotated[
        bool, typer.Option(help="Recompute even when the stored meshes are up to date.")
    ] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for IMAGE.")] = None,
) -> None:
    """Compute each segment's surface and store it with the labels (served at /meshes/)."""
    from cellvol.labels._meshes import compute_meshes

    index = compute_meshes(
        image,
        labels,
        triangle_budget=triangle_budget,
        smoothing=smoothing,
        force=force,
        storage_options=storage_options_of(endpoint_url, anon=False),
    )
    triangles = sum(entry.triangles for entry in index.segments.values())
    console.print(
        f"Labels '{labels}' of {image}: {len(index.segments)} segment surface(s), "
        f"{triangles:,} triangles."
    )
    for segment, reason in sorted(index.skipped.items()):
        console.print(f"segment {segment}: no surface ({reason})")
