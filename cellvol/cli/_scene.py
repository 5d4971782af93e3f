"""The ``link`` command, and what ``info`` says of a scene: OME-Zarr 0.6 scenes of LM and EM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from cellvol.cli._app import app, storage_options_of
from cellvol.cli._display import console
from cellvol.errors import NotOMEZarrError
from cellvol.ome._points import AffineFit
from cellvol.read._scene import open_scene
from cellvol.write._link import link as link_scene


@app.command()
def link(
    scene: Annotated[str, typer.Argument(help="The scene group to write (local path or s3://).")],
    images: Annotated[
        list[str],
        typer.Argument(
            help="NAME=IMAGE for each OME-Zarr 0.6 image, e.g. em=em.ome.zarr lm=lm.ome.zarr; "
            "the first is the reference unless --reference says otherwise."
        ),
    ],
    points: Annotated[
        Path | None,
        typer.Option(
            help="Point pairs (CSV lm_x,lm_y,lm_z,em_x,em_y,em_z with a header, or JSON), in "
            "nm: the affine is fitted to them by least squares."
        ),
    ] = None,
    affine: Annotated[
        str | None,
        typer.Option(
            help="The affine from --moving's space to the reference's, z,y,x order, in the "
            "images' units: a JSON 4x4 (or 3x4) matrix, or a .json file holding one."
        ),
    ] = None,
    scale: Annotated[str | None, typer.Option(help="Instead of --affine: scale z,y,x.")] = None,
    translation: Annotated[
        str | None, typer.Option(help="Instead of --affine: translation z,y,x.")
    ] = None,
    moving: Annotated[
        str | None,
        typer.Option(help="The image --affine/--scale place (default: the last NAME)."),
    ] = None,
    reference: Annotated[str | None, typer.Option(help="The image placed into.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a scene already at SCENE.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Write an OME-Zarr 0.6 scene placing images (LM) in another image's (EM) space."""
    named = dict(_pair(text) for text in images)
    transforms: dict[str, Any] = {}
    if affine is not None or scale is not None or translation is not None:
        if affine is not None and (scale is not None or translation is not None):
            raise typer.BadParameter("give --affine, or --scale and/or --translation")
        target = moving or list(named)[-1]
        if affine is not None:
            transforms[target] = _matrix(affine)
        else:
            given = {"scale": scale, "translation": translation}
            transforms[target] = {k: _numbers(v, k) for k, v in given.items() if v is not None}
    if reference is None and points is None and transforms:
        reference = next(name for name in named if name not in transforms)
    result = link_scene(
        scene,
        named,
        transforms,
        points=points,
        reference=reference,
        overwrite=overwrite,
        storage_options=storage_options_of(endpoint_url, anon),
    )
    if as_json:
        summary = {
            "scene": result.url,
            "reference": result.reference,
            "matrices": {k: np.asarray(v).tolist() for k, v in result.matrices.items()},
            "fit": result.fit.summary() if result.fit is not None else None,
        }
        console.print_json(json.dumps(summary))
        return
    console.print(f"Wrote the scene [bold]{result.url}[/] (reference: {result.reference})")
    if result.fit is not None:
        _print_fit(result.fit)


def _pair(text: str) -> tuple[str, str]:
    name, sep, image = text.partition("=")
    if not sep or not name or not image:
        raise typer.BadParameter(f"{text!r}: expected NAME=IMAGE, e.g. lm=lm.ome.zarr")
    return name, image


def _matrix(text: str) -> Any:
    source = Path(text).read_text() if text.endswith(".json") and Path(text).is_file() else text
    try:
        return json.loads(source)
    except ValueError:
        raise typer.BadParameter(
            f"--affine {text!r} is neither a JSON matrix nor a .json file"
        ) from None


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--{what} must be three numbers z,y,x, got {text!r}") from None
    if len(values) != 3:
        raise typer.BadParameter(f"--{what} must be three numbers z,y,x, got {text!r}")
    return values


def _print_fit(fit: AffineFit) -> None:
    console.print(
        f"Fitted an affine {fit.pairs.moving} → {fit.pairs.reference} to {len(fit.residuals_nm)} "
        f"point pairs: RMS residual {fit.rms_nm:.1f} nm, max {fit.max_nm:.1f} nm"
    )
    table = Table("point", "residual (nm)")
    for i, value in enumerate(fit.residuals_nm, start=1):
        table.add_row(str(i), f"{value:.1f}")
    console.print(table)


def print_scene(path_or_url: str, as_json: bool, options: dict[str, Any] | None) -> bool:
    """Describe the scene at ``path_or_url`` (for ``info``); False when it is not a scene."""
    try:
        scene = open_scene(path_or_url, options)
    except NotOMEZarrError:
        return False
    summary = scene.info()
    if as_json:
        console.print_json(json.dumps(summary))
        return True
    console.print(f"[bold]{scene.url}[/]: OME-Zarr 0.6 scene of {len(scene)} images")
    table = Table("image", "coordinate system", "shape", "voxel size", "levels")
    for name, image in summary["images"].items():
        size = " × ".join(f"{v:g}" for v in image["voxel_size"])
        table.add_row(name, image["coordinate_system"], " × ".join(map(str, image["shape"])),
                      f"{size} {image['unit'] or ''}", str(image["levels"]))  # fmt: skip
    console.print(table)
    names = {place: name for name, place in scene.places.items()}
    for edge in scene.edges:
        if edge.index < 0 or edge.source not in names or edge.target not in names:
            continue  # an image's own transformation, or one into a system of the scene's
        source, target = names[edge.source], names[edge.target]
        matrix = scene.transform(source, target)
        rows = "\n".join("  " + "  ".join(f"{v:10.4g}" for v in r) for r in matrix[:3])
        console.print(f"{source} → {target} ({edge.transform.get('type')}):\n{rows}",
                      highlight=False)  # fmt: skip
    return True
