"""Images with channels and time points: channel names, and one channel seen as a volume.

An image with axes ``(c, z, y, x)`` or ``(t, c, z, y, x)`` reads as a whole like any array.
:func:`channel_view` gives one channel (of one time point) as a 3-D :class:`Volume` whose
levels read through the same chunks, so everything a volume offers works on a channel.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cellvol.errors import InvalidInputError
from cellvol.ome._coords06 import Matrix
from cellvol.ome._display import channels_of
from cellvol.ome._metadata import CoordinateSystem, Dataset, Multiscale

if TYPE_CHECKING:
    from cellvol.read._volume import Volume

__all__ = ["channel_names", "channel_view", "name_channels"]


def _axis_of(volume: Volume, kind: str, name: str) -> int | None:
    """The array index of the axis of this type (or, untyped, of this name), if any."""
    for number, axis in enumerate(volume.multiscale.axes):
        if axis.type == kind or (axis.type is None and axis.name == name):
            return number
    return None


def channel_names(volume: Volume) -> tuple[str, ...]:
    """The names of the image's channels, in order; empty when it has no channel axis.

    From the ``omero`` display metadata when it has one entry per channel, else the indices.
    """
    at = _axis_of(volume, "channel", "c")
    if at is None:
        return ()
    count = volume.shape[at]
    stored = [display.label for display in channels_of(volume.attributes)]
    if len(stored) == count and len(set(stored)) == count:
        return tuple(stored)
    return tuple(str(i) for i in range(count))


def channel_view(volume: Volume, which: int | str, t: int = 0) -> Volume:
    """One channel of one time point of ``volume`` as a ``(z, y, x)`` volume.

    Raises
    ------
    InvalidInputError
        If the image has no channel axis, axes other than time and channel before the
        spatial ones, or no such channel or time point.
    """
    c_axis = _axis_of(volume, "channel", "c")
    if c_axis is None:
        raise InvalidInputError(f"{volume.url} has no channel axis; its axes are {volume.axes}")
    names = channel_names(volume)
    if isinstance(which, str):
        if which not in names:
            raise InvalidInputError(
                f"{volume.url} has no channel {which!r}; its channels are {names}"
            )
        index = names.index(which)
    else:
        index = int(which)
        if not -len(names) <= index < len(names):
            raise InvalidInputError(
                f"channel {index} is out of range: {volume.url} has {len(names)} channel(s)"
            )
        index %= len(names)
    t_axis = _axis_of(volume, "time", "t")
    lead = {c_axis: index}
    if t_axis is not None:
        steps = volume.shape[t_axis]
        if not -steps <= t < steps:
            raise InvalidInputError(
                f"time point {t} is out of range: {volume.url} has {steps} time point(s)"
            )
        lead[t_axis] = int(t) % steps
    elif t != 0:
        raise InvalidInputError(f"{volume.url} has no time axis; its axes are {volume.axes}")
    if sorted(lead) != list(range(len(lead))):
        raise InvalidInputError(
            f"{volume.url}: channels are read when time and channel are the first axes; its "
            f"axes are {volume.axes}"
        )
    fixed = tuple(lead[i] for i in range(len(lead)))
    keep = len(fixed)
    levels = tuple(
        dataclasses.replace(
            level,
            fixed=fixed,
            axes=level.axes[keep:],
            scale=level.scale[keep:],
            translation=level.translation[keep:],
        )
        for level in volume.levels
    )
    multiscale = _trimmed(volume.multiscale, keep)
    return type(volume)(
        volume.url,
        multiscale,
        levels,
        volume.attributes,
        group=volume.group,
        storage_options=volume.storage_options,
        cache=volume.cache,
        open_part=volume.open_part,
    )


def _trimmed(multiscale: Multiscale, keep: int) -> Multiscale:
    """The multiscale of a view without its first ``keep`` axes."""
    dropped = {axis.name for axis in multiscale.axes[:keep]}
    datasets = tuple(
        Dataset(
            d.path,
            d.scale[keep:],
            d.translation[keep:],
            None if d.affine is None else _sub_matrix(d.affine, keep),
        )
        for d in multiscale.datasets
    )
    systems = tuple(
        CoordinateSystem(s.name, tuple(a for a in s.axes if a.name not in dropped))
        for s in multiscale.coordinate_systems
    )
    return dataclasses.replace(
        multiscale,
        axes=multiscale.axes[keep:],
        datasets=datasets,
        coordinate_systems=systems,
        transformations=(),
    )


def _sub_matrix(matrix: Matrix, keep: int) -> Matrix:
    """A homogeneous matrix without its first ``keep`` rows and columns."""
    return tuple(tuple(row[keep:]) for row in matrix[keep:])


def name_channels(volume: Volume, data: Any) -> Any:
    """``data`` (an ``xarray.DataArray`` of one of ``volume``'s levels), channels named.

    Its channel axis's coordinate holds the channel names instead of indices.
    """
    at = _axis_of(volume, "channel", "c")
    if at is None:
        return data
    dim = volume.axes[at]
    return data.assign_coords({dim: list(channel_names(volume))})
