"""The ``cellvol`` command line: a thin shell over the library that draws with rich.

The commands live here, in ``_archive`` (verify, pack, unpack, crate), ``_export`` (export),
``_meshes`` (meshes), ``_validate`` and ``_scene`` (link, and ``info`` of a scene);
``_display`` draws tables, progress bars and error lines.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from cellvol._store import close_sessions
from cellvol._version import __version__
from cellvol.cli._app import app, command_options, spell_option, storage_options_of
from cellvol.cli._display import (
    console,
    metadata_problems,
    print_volume,
    progress_bar,
    report,
    report_bug,
    report_warning,
)
from cellvol.errors import CellvolError, CellvolWarning, NotOMEZarrError, WriteConflictError
from cellvol.read._open import open as open_volume
from cellvol.synthetic import SyntheticVolume
from cellvol.units import VoxelSize
from cellvol.write._allocator import tune_allocator
from cellvol.write._pyramid import write_pyramid

# What the demo writes by default: a 64 MiB uint8 tomogram with 2 nm voxels (a bin-2 cryo-ET).
_DEMO_SHAPE = "256,512,512"
_DEMO_SOURCE = "cellvol demo"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exit with its status.

    Every error ends the run as one line, ``error: ...``, sometimes followed by one line
    ``hint: ...`` naming the command's own options; never as a traceback. The status is 2 for
    a command line that does not parse, else 1.

    Parameters
    ----------
    argv
        The arguments after the program's name; by default ``sys.argv[1:]``.
    """
    args = (sys.argv[1:] if argv is None else list(argv)) or ["--help"]
    try:
        try:
            with warnings.catch_warnings():  # restores the caller's display on the way out
                warnings.showwarning = _show_warning
                status = app(args=args, prog_name="cellvol", standalone_mode=False)
        finally:
            close_sessions()  # else aiohttp reports each S3 or HTTP session open at exit
    except typer.TyperException as exc:  # the command line does not parse, or BadParameter
        ctx = getattr(exc, "ctx", None)
        report(exc.format_message(), f"see '{ctx.command_path if ctx else 'cellvol'} --help'")
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        report("aborted", None)
        raise SystemExit(1) from None
    except CellvolError as exc:
        options = command_options(args)
        report(exc.message, exc.hint_as(functools.partial(spell_option, options)))
        raise SystemExit(1) from None
    except OSError as exc:  # the file system or network refused something: the user's to fix
        report(str(exc) or type(exc).__name__, None)
        raise SystemExit(1) from None
    except Exception as exc:
        report_bug(exc)
        raise SystemExit(1) from None
    raise SystemExit(status if isinstance(status, int) else 0)


_show_other_warning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Show cellvol's own warnings as one ``warning: ...`` line; others as Python shows them."""
    if issubclass(category, CellvolWarning):
        report_warning(str(message))
    else:
        _show_other_warning(message, category, filename, lineno, file, line)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"cellvol {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print cellvol's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Very large 3-D microscopy volumes as pyramidal, sharded OME-Zarr."""


def _triple(text: str, what: str) -> tuple[int, int, int]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{what} must be three integers like 256,512,512") from None
    if len(values) != 3:
        raise typer.BadParameter(f"{what} must have three entries (z,y,x), got {text!r}")
    return values[0], values[1], values[2]


@app.command()
def demo(
    dest: Annotated[Path, typer.Argument(help="Where to write the demo image.")] = Path(
        "cellvol-demo.ome.zarr"
    ),
    shape: Annotated[str, typer.Option(help="Volume shape z,y,x in voxels.")] = _DEMO_SHAPE,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic volume.")] = 0,
    dtype: Annotated[str, typer.Option(help="uint8, uint16, int8, int16 or float32.")] = "uint8",
    voxel_size: Annotated[float, typer.Option(help="Isotropic voxel size in nm.")] = 2.0,
) -> None:
    """Generate a synthetic cryo-electron tomogram and write it as a multiscale OME-Zarr."""
    tune_allocator()  # this process's main work is the write
    zyx = _triple(shape, "--shape")
    _refuse_non_demo(dest)
    source = SyntheticVolume(zyx, dtype=dtype, seed=seed)
    console.print(
        f"Generating a synthetic tomogram {zyx[0]}×{zyx[1]}×{zyx[2]} {dtype} "
        f"({source.nbytes / 2**20:,.1f} MiB, seed {seed}) into [bold]{dest}[/]"
    )
    with progress_bar() as draw:
        result = write_pyramid(
            source,
            dest,
            voxel_size,
            source_description=f"{_DEMO_SOURCE}: SyntheticVolume(shape={zyx}, dtype={dtype}, "
            f"seed={seed})",
            overwrite=dest.exists(),
            progress=draw,
        )
    elapsed = result.seconds
    volume = open_volume(dest)
    print_volume(volume, validate_metadata=True)
    stored = sum(level.nbytes_stored() for level in volume.levels)
    raw = sum(level.nbytes for level in volume.levels)
    console.print(
        f"Wrote {raw / 2**20:,.1f} MiB of voxels as {stored / 2**20:,.1f} MiB "
        f"(compression ratio {raw / max(stored, 1):.2f}) in {elapsed:.1f} s "
        f"({volume.levels[0].nbytes / 2**20 / elapsed:,.0f} MiB/s of input)."
    )
    console.print("Open it with:")
    console.print(f"  cellvol info {dest}")
    console.print(f"  python -c \"import cellvol; v = cellvol.open('{dest}'); print(v[0].mean())\"")


def _refuse_non_demo(dest: Path) -> None:
    """The demo may replace its own earlier output, never anything else."""
    if not dest.exists():
        return
    try:
        record = open_volume(dest).provenance or {}
    except CellvolError:
        record = {}
    if not str(record.get("source", "")).startswith(_DEMO_SOURCE):
        raise WriteConflictError(
            f"{dest} exists and is not an earlier cellvol demo; choose another destination"
        )


@app.command()
def convert(
    src: Annotated[
        str,
        typer.Argument(
            help="Input: an MRC file, a TIFF file, a directory or glob of TIFF slices, an HDF5 "
            "file (file.h5:/dataset), a .npy array, or a zarr / OME-Zarr image."
        ),
    ],
    dest: Annotated[
        str | None,
        typer.Argument(
            help="Output image: a local path or s3:// URL (the only one with --channel)."
        ),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(help="Voxel size z,y,x (or one value); default: what the input records."),
    ] = None,
    unit: Annotated[str, typer.Option(help="Unit of --voxel-size.")] = "nm",
    method: Annotated[str, typer.Option(help="mean, mode (labels), stride, min or max.")] = "mean",
    chunks: Annotated[str | None, typer.Option(help="Inner chunk shape z,y,x.")] = None,
    shards: Annotated[str | None, typer.Option(help="Shard shape z,y,x.")] = None,
    levels: Annotated[
        int | None, typer.Option(help="Number of levels (default: to a tile).")
    ] = None,
    compression_level: Annotated[int, typer.Option(help="zstd level (1-22).")] = 3,
    uncompressed_fraction: Annotated[
        float | None,
        typer.Option(
            help="Store levels with at most this fraction of the full resolution's voxels "
            "uncompressed (default 1/64 for images, 0 for --method mode)."
        ),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="HDF5 dataset to read.")] = None,
    axes: Annotated[
        str | None,
        typer.Option(help="Stored axes of an HDF5 dataset or .npy with channels, e.g. czyx, zcyx."),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=INPUT, repeated: one volume per channel (e.g. a TIFF glob each); then "
            "the only argument is DEST."
        ),
    ] = None,
    int8: Annotated[
        str, typer.Option(help="MRC mode 0 bytes: auto (IMOD's flag), signed or unsigned.")
    ] = "auto",
    memory_limit_mib: Annotated[int, typer.Option(help="Memory the tasks may hold.")] = 1024,
    workers: Annotated[int | None, typer.Option(help="Parallel tasks (default: CPUs).")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted conversion into DEST.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace whatever is at DEST.")] = False,
    break_lease: Annotated[
        bool,
        typer.Option(
            help="Take over the write lease of another writer known to be gone (S3: one "
            "killed less than two minutes ago; later, --resume takes it over)."
        ),
    ] = False,
    digest: Annotated[
        bool, typer.Option(help="Record each input file's SHA-256 in the provenance.")
    ] = True,
    ome_version: Annotated[str, typer.Option(help="OME-Zarr version: 0.5 or 0.6.")] = "0.5",
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for DEST.")] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Add SRC as labels of this name to the existing image DEST (a segmentation: "
            "integer IDs, the image's shape)."
        ),
    ] = None,
) -> None:
    """Convert an input into a multiscale OME-Zarr; after an interruption, run with --resume.

    With --labels NAME, SRC is a segmentation and DEST an existing image: the labels are added
    to it with the image's levels and layout, and their segment table is computed.
    """
    tune_allocator()  # this process's main work is the write
    from cellvol.formats._ingest import convert as convert_file
    from cellvol.formats._ingest import open_input

    if int8 not in ("auto", "signed", "unsigned"):
        raise typer.BadParameter("--int8 must be auto, signed or unsigned")
    inputs: str | dict[str, str] = src
    if channel:
        if dest is not None or labels is not None:
            raise typer.BadParameter("with --channel, give DEST only (and no --labels)")
        inputs, dest = _channel_inputs(channel), src
    elif dest is None:
        raise typer.BadParameter("missing DEST: convert SRC DEST")
    if labels is not None and _is_sff(src):
        _add_sff(src, dest, labels, storage_options_of(endpoint_url, anon=False), overwrite)
        return
    # Opened here to say what is converted before the work starts; convert() reuses it.
    source = open_input(inputs, dataset=dataset, int8=int8, axes=axes)  # type: ignore[arg-type]
    if labels is not None:
        given = [
            flag
            for flag, value in (
                ("--voxel-size", voxel_size),
                ("--chunks", chunks),
                ("--shards", shards),
                ("--levels", levels),
                ("--method", None if method == "mean" else method),
                ("--compression-level", None if compression_level == 3 else compression_level),
                ("--uncompressed-fraction", uncompressed_fraction),
            )
            if value is not None
        ]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} do not apply with --labels: labels take the image's voxel "
                "size, levels and layout, and are downsampled with mode"
            )
        _add_labels(source, dest, labels, storage_options_of(endpoint_url, anon=False), overwrite)
        return
    voxel = _voxel_option(voxel_size, unit) or source.voxel_size
    shown = f" at {voxel}" if voxel is not None else ""
    console.print(f"Converting {source.description}\n  into [bold]{dest}[/]{shown}")
    options = storage_options_of(endpoint_url, anon=False)
    with progress_bar() as draw:
        result = convert_file(
            inputs,
            dest,
            voxel_size=voxel,
            dataset=dataset,
            int8=int8,  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]  # checked by write_pyramid
            chunks=_triple(chunks, "--chunks") if chunks else None,
            shards=_triple(shards, "--shards") if shards else None,
            n_levels=levels,
            compression_level=compression_level,
            uncompressed_fraction=uncompressed_fraction,
            memory_limit=memory_limit_mib * 2**20,
            workers=workers,
            storage_options=options,
            overwrite=overwrite,
            resume=resume,
            break_lease=break_lease,
            digest=digest,
            progress=draw,
            opened=source,
            ome_version=ome_version,
        )
    reused = f", {result.shards_reused} reused from an earlier run" if result.shards_reused else ""
    console.print(
        f"{result.shards_written} shards written{reused} in {result.seconds:.1f} s "
        f"({len(result.plan)} levels)."
    )
    print_volume(open_volume(dest, storage_options=options), validate_metadata=True)


def _channel_inputs(options: Sequence[str]) -> dict[str, str]:
    """``--channel NAME=INPUT`` options as ``{name: input}``, in order."""
    inputs: dict[str, str] = {}
    for option in options:
        name, sep, path = option.partition("=")
        if not sep or not name.strip() or not path.strip() or name.strip() in inputs:
            raise typer.BadParameter(
                f"--channel {option!r}: expected NAME=INPUT with a new name, e.g. dna='dna/*.tif'"
            )
        inputs[name.strip()] = path.strip()
    return inputs


def _add_labels(
    source: Any, image: str, name: str, options: dict[str, Any] | None, overwrite: bool
) -> None:
    from cellvol.labels._write import write_labels

    console.print(f"Adding {source.description}\n  to [bold]{image}[/] as labels '{name}'")
    with progress_bar() as draw:
        written = write_labels(
            image, source.array, name, storage_options=options, overwrite=overwrite, progress=draw
        )
    table = written.segments
    console.print(
        f"{len(written.levels)} levels; {len(table)} segments "
        f"(largest: {int(table.voxel_count.max()) if len(table) else 0:,} voxels)."
    )


def _is_sff(src: str) -> bool:
    from cellvol.labels._sff import is_sff

    return "://" not in src and is_sff(src)


def _add_sff(
    source: str, image: str, name: str, options: dict[str, Any] | None, overwrite: bool
) -> None:
    from cellvol.labels._sff import import_sff

    console.print(f"Adding EMDB-SFF {source}\n  to [bold]{image}[/] as labels '{name}'")
    with progress_bar() as draw:
        done = import_sff(
            image, source, name, storage_options=options, overwrite=overwrite, progress=draw
        )
    console.print(
        f"{len(done.labels.levels)} levels; {len(done.labels.segments)} segments, "
        f"{len(done.annotated)} annotated."
    )
    if done.empty_segments:
        console.print(f"SFF segments with no voxel, left out: {list(done.empty_segments)}")
    for segment, resource, accession in done.skipped_references:
        console.print(
            f"segment {segment}: reference {resource}:{accession} left out (a resource or "
            "accession form cellvol does not check)"
        )


@app.command()
def annotate(
    image: Annotated[str, typer.Argument(help="The OME-Zarr image: local path or s3:// URL.")],
    annotations: Annotated[
        Path,
        typer.Argument(
            help="CSV (segment_id,name,description,references) or JSON list of segments; "
            "references like 'UniProt:P69905; GO:0005739'."
        ),
    ],
    labels: Annotated[str, typer.Option(help="The label image's name.")],
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for IMAGE.")] = None,
) -> None:
    """Name segments and link them to UniProt, GO, PDB, EMDB... without rewriting data."""
    from cellvol.labels._annotate import annotate_from_file

    count = annotate_from_file(
        image, labels, annotations, storage_options=storage_options_of(endpoint_url, anon=False)
    )
    console.print(f"Annotated {count} segment(s) of labels '{labels}' in {image}.")


@app.command()
def serve(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Images or scenes (cellvol link) to serve: local paths or s3:// URLs, each "
            "optionally NAME=PATH (default name: the folder's, less .zarr / .ome.zarr)."
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8000,
    max_concurrency: Annotated[int, typer.Option(help="Images rendered at once; more wait.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds a rendering request may take.")] = 30.0,
    max_connections: Annotated[
        int, typer.Option(help="Connections open at once; more are refused (503).")
    ] = 2048,
    max_connections_per_client: Annotated[
        int,
        typer.Option(
            help="Connections one client (IP address; IPv6 /64) may hold; "
            "0: no cap, behind a reverse proxy."
        ),
    ] = 128,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a connection has to send a whole request head.")
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds a kept-alive connection may wait for its next request.")
    ] = 5.0,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint for the images.")] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
) -> None:
    """Serve images over HTTP: raw keys for viewers, tiles, a catalog and a browser page."""
    from cellvol.server import Server

    server = Server(
        images,
        host=host,
        port=port,
        storage_options=storage_options_of(endpoint_url, anon),
        max_concurrency=max_concurrency,
        timeout=timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        header_timeout=header_timeout,
        idle_timeout=idle_timeout,
    )
    for served in server.app.state.served:
        console.print(f"[bold]{served.name}[/]: {served.url}")
        console.print(f"  browse   {server.url}view/{served.name}")
        console.print(f"  raw keys {server.url}data/{served.name}/")
    for scene in server.app.state.scenes:
        placed = ", ".join(scene.placed)
        console.print(f"[bold]{scene.name}[/]: a scene, {placed} over {scene.reference}")
        console.print(f"  browse       {server.url}view/{scene.name}")
        console.print(f"  neuroglancer {server.url}neuroglancer/{scene.name}")
    console.print(f"catalog {server.url}catalog   (Ctrl-C to stop)")
    server.run()


def _voxel_option(text: str | None, unit: str) -> VoxelSize | None:
    if text is None:
        return None
    try:
        parts = [float(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"--voxel-size takes numbers like 50,4,4, not {text!r}") from None
    if len(parts) not in (1, 3):
        raise typer.BadParameter(f"--voxel-size needs one or three values, got {text!r}")
    return VoxelSize.of(parts[0] if len(parts) == 1 else parts, unit)


@app.command()
def info(
    path_or_url: Annotated[str, typer.Argument(help="Local path, s3:// or http(s):// URL, .ozx.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3 endpoint, for S3-compatible object stores.")
    ] = None,
    anon: Annotated[bool, typer.Option(help="Anonymous (unsigned) S3 access.")] = False,
    salvage: Annotated[
        bool,
        typer.Option(help="Open an image whose write manifest is missing, to see what is left."),
    ] = False,
) -> None:
    """Describe an OME-Zarr image: levels, shapes, chunks, shards, voxel size, bytes, validity."""
    options = storage_options_of(endpoint_url, anon)
    try:
        volume = open_volume(path_or_url, storage_options=options, salvage=salvage)
    except NotOMEZarrError:
        if not _scene.print_scene(path_or_url, as_json, options):  # a scene, else the error
            raise
        return
    if as_json:
        summary = volume.info()
        summary["metadata_problems"] = metadata_problems(volume)
        console.print_json(json.dumps(summary))
        return
    print_volume(volume, validate_metadata=True)


# These commands register themselves on the app; imported last, listed last.
from cellvol.cli import _archive, _export, _meshes, _scene, _validate  # noqa: E402, F401
