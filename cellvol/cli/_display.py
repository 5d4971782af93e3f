"""What the command line draws: tables of levels, progress bars, and one-line errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cellvol.integrity import VerifyReport
from cellvol.ome._display import channels_of
from cellvol.ome._validation import validate
from cellvol.progress import ProgressEvent
from cellvol.read._volume import Volume

__all__ = [
    "console",
    "errors",
    "metadata_problems",
    "print_verify_report",
    "print_volume",
    "progress_bar",
    "report",
    "report_warning",
]

# Messages soft-wrap: a path or an error must stay on one line in logs, whatever the width.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
_SHORT_UNITS = {"nanometer": "nm", "angstrom": "Å", "micrometer": "µm", "millimeter": "mm"}


def report(message: str, hint: str | None) -> None:
    """Print an error as one line, and its hint as a second, whatever the text held."""
    line = Text.assemble(("error:", "bold red"), " ", " ".join(message.split()))
    errors.print(line, highlight=False)
    if hint:
        errors.print(Text.assemble(("hint:", "bold"), " ", " ".join(hint.split())))


# Set to 1 to see the traceback of an unexpected error (one that is a bug, not a user's input).
TRACEBACK_VARIABLE = "CELLVOL_TRACEBACK"


def report_bug(exc: Exception) -> None:
    """Report an unexpected error as a bug in one line, or re-raise it when asked to."""
    if os.environ.get(TRACEBACK_VARIABLE) == "1":
        raise exc
    report(
        f"unexpected {type(exc).__name__}: {exc}",
        f"this is a bug in cellvol; run again with {TRACEBACK_VARIABLE}=1 to see where, "
        "and report it",
    )


def report_warning(message: str) -> None:
    """Print a warning (something worked around that the user should know) as one line."""
    line = Text.assemble(("warning:", "bold yellow"), " ", " ".join(message.split()))
    errors.print(line, highlight=False)


class _RichProgress:
    """Draws :class:`ProgressEvent` values as one rich bar per pyramid level."""

    def __init__(
        self, progress: Progress, describe: Callable[[ProgressEvent], str] | None = None
    ) -> None:
        self._progress = progress
        self._describe = describe or _describe_levels
        self._tasks: dict[int, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage not in self._tasks:
            label = self._describe(event)
            self._tasks[event.stage] = self._progress.add_task(label, total=event.total)
        self._progress.update(self._tasks[event.stage], completed=event.done)


def _describe_levels(event: ProgressEvent) -> str:
    first, last = event.levels[0], event.levels[-1]
    return f"level {first}" if first == last else f"levels {first}-{last}"


class progress_bar:
    """A context drawing progress events as rich bars; ``describe`` names each stage's bar.

    ``hidden`` draws nothing at all, not even the blank line a finished bar leaves (for output
    that another program reads).
    """

    def __init__(
        self,
        describe: Callable[[ProgressEvent], str] | None = None,
        unit: str = "tasks",
        *,
        hidden: bool = False,
    ) -> None:
        self._describe = describe
        self._unit = unit
        self._hidden = hidden

    def __enter__(self) -> _RichProgress:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self._unit),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=self._hidden,
        )
        self._progress.__enter__()
        return _RichProgress(self._progress, self._describe)

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)


def metadata_problems(volume: Volume) -> list[str] | None:
    """Problems with the image's OME-NGFF metadata; None for a bare zarr array."""
    if volume.ome_version is None:
        return None
    return [f"{p.path}: {p.message}" for p in validate(volume.attributes)]


def print_volume(volume: Volume, *, validate_metadata: bool) -> None:
    summary = volume.info()
    unit = _SHORT_UNITS.get(summary["unit"], summary["unit"] or "unitless")
    table = Table(title=f"{volume.url}  ({summary['dtype']}, axes {','.join(volume.axes)})")
    for column in ("level", "shape", "chunks", "shards", f"voxel size ({unit})", "stored"):
        table.add_column(column, justify="right" if column in ("level", "stored") else "left")
    for level in summary["levels"]:
        voxel = level["voxel_size"]
        table.add_row(
            str(level["index"]),
            "×".join(map(str, level["shape"])),
            "×".join(map(str, level["chunks"])),
            "×".join(map(str, level["shards"])) if level["shards"] else "-",
            " × ".join(f"{v:g}" for v in voxel) if voxel else "-",
            f"{level['nbytes_stored'] / 2**20:,.2f} MiB",
        )
    console.print(table, soft_wrap=False)
    if volume.channels:
        colours = {d.label: d.color for d in channels_of(volume.attributes)}
        listing = ", ".join(f"{n} #{colours[n]}" if n in colours else n for n in volume.channels)
        console.print(f"channels: {listing}", highlight=False)
    for name in volume.labels:
        console.print(f"labels [bold]{name}[/]: {volume.labels[name].url}")
    if not validate_metadata:
        return
    problems = metadata_problems(volume)
    if problems is None:
        console.print("A bare zarr array (no OME-Zarr metadata), read as one level.")
    elif problems:
        console.print(f"[bold red]OME-Zarr {volume.ome_version} metadata has problems:[/]")
        for problem in problems:
            console.print(f"  - {problem}", highlight=False)
    else:
        console.print(f"[green]valid OME-Zarr {volume.ome_version}[/] metadata")


def print_verify_report(report: VerifyReport, *, as_json: bool) -> None:
    """Print what ``cellvol verify`` found: its summary, or the report as JSON."""
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        console.print(report.summary(), highlight=False)
