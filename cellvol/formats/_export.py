"""Write a region of any pyramid level back out as an MRC or TIFF file, in bounded memory.

The file is built under a temporary name beside the target (``<name>.partial``) and renamed
into place only when it is complete and flushed to the disk, so neither an interrupted export
nor a crash soon after one leaves a file that looks finished but is not. Data is copied in slabs
of whole planes of at most :data:`SLAB_BYTES`.

MRC files get the level's voxel size (in ångström) and the region's origin in the header,
standard axis order (columns X, rows Y, sections Z) and header statistics computed slab by slab.
Every file is one that any MRC2014 reader (mrcfile, EMDB's and EMPIAR's tools, ChimeraX,
IMOD) reads with the same values: MRC2014 defines mode 0 as *signed* bytes, so ``uint8`` is
widened to mode 6 (``uint16``), as mrcfile itself does, and ``int8`` is mode 0 (with IMOD's
stamp marking it signed). IMOD's older convention, ``uint8`` as mode 0 marked unsigned by
IMOD's stamp, is an explicit option (``imod_unsigned``): half the size, but readers that ignore
the stamp see values above 127 as negative. Types MRC has no mode for (32- and 64-bit
integers, float64) are refused: export them to TIFF. TIFF files are OME-TIFF (BigTIFF when
large) with the physical voxel size. An image with channels (and time points) exports to
an OME-TIFF with the same axes and the channels' names and colours (``Channel/@Color``, signed
32-bit RGBA, where every channel has one), or one channel at a time to either.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol._store import replace_durably
from cellvol.errors import InvalidInputError, WriteConflictError
from cellvol.formats._imod import IMOD_FIELDS_OFFSET, IMOD_SIGNED_BYTES, IMOD_STAMP
from cellvol.ome._display import channel_color, stored_channels
from cellvol.read._level import Level
from cellvol.read._open import open as open_volume
from cellvol.read._volume import Volume
from cellvol.units import VoxelSize, convert_lengths

__all__ = ["IMOD_UNSIGNED_MODE", "MRC_MODES", "SLAB_BYTES", "export", "parse_region"]

#: Largest block of planes held in memory at once.
SLAB_BYTES: Final = 128 * 2**20
#: Element types an MRC file can hold, with the mode every MRC2014 reader reads them from
#: unchanged (``uint8`` has no such mode of its own: mode 0 is signed, so it is widened).
MRC_MODES: Final[dict[str, int]] = {
    "int8": 0,
    "uint8": 6,
    "int16": 1,
    "float32": 2,
    "uint16": 6,
    "float16": 12,
}
#: The mode of ``uint8`` with ``imod_unsigned``: IMOD's unsigned bytes.
IMOD_UNSIGNED_MODE: Final = 0
_MRC_SUFFIXES: Final = (".mrc", ".map", ".rec", ".mrcs")
_TIFF_SUFFIXES: Final = (".tif", ".tiff", ".btf")
_BIGTIFF_AFTER: Final = 2**31


def export(
    image: Volume | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    level: int = 0,
    region: Sequence[slice] | str | None = None,
    overwrite: bool = False,
    imod_unsigned: bool = False,
    storage_options: dict[str, Any] | None = None,
    channel: int | str | None = None,
    t: int = 0,
) -> Path:
    """Write a region of one level of an image to an MRC or TIFF file.

    Parameters
    ----------
    image
        An open :class:`~cellvol.Volume`, or a path or URL to open.
    path
        The file to write; ``.mrc .map .rec .mrcs`` for MRC, ``.tif .tiff .btf`` for TIFF.
    level
        The pyramid level (0 is full resolution, negative counts from the coarsest).
    region
        ``(z, y, x)`` slices, or text like ``"0:64,100:356,:"``; default the whole level.
    overwrite
        Replace an existing file at ``path``.
    imod_unsigned
        Write ``uint8`` as mode 0 with IMOD's stamp marking the bytes unsigned (IMOD before
        4.2.23 wrote bytes so) instead of widening it to mode 6. Only readers that honour the
        stamp (IMOD, cellvol) read such a file as written; mrcfile and other MRC2014 readers
        see signed bytes, and ``mrcfile.validate`` reports its statistics as wrong. Other
        types are unaffected.
    storage_options
        For opening ``image`` from a URL.
    channel, t
        Export only this channel (a name or an index) at time point ``t``, as a ``(z, y, x)``
        volume. Without it, every channel and time point goes into the file, which must then
        be a TIFF (OME-TIFF ``CZYX`` or ``TCZYX`` with the channels' names); ``region``
        applies to each.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InvalidInputError
        For an unknown file type, a region outside the level, an element type the format
        cannot hold, or channels for an MRC file.
    WriteConflictError
        If ``path`` exists and ``overwrite`` is False.
    """
    volume = image if isinstance(image, Volume) else open_volume(image, storage_options)
    if channel is not None:
        volume = volume.channel(channel, t=t)
    chosen = volume.level(level)
    lead = chosen.ndim - 3
    if lead and not (volume.channels and volume.axes[:lead] in (("c",), ("t", "c"))):
        raise InvalidInputError(f"{volume.url}: level {level} is {chosen.ndim}-D; expected z, y, x")
    spatial = chosen.shape[lead:]
    box = (
        parse_region(region, spatial)
        if isinstance(region, str) or region is None
        else (_check_region(tuple(region), spatial))
    )
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix not in _MRC_SUFFIXES + _TIFF_SUFFIXES:
        raise InvalidInputError(
            f"{path}: cannot tell the format from the suffix; use one of "
            f"{' '.join(_MRC_SUFFIXES + _TIFF_SUFFIXES)}"
        )
    if lead and suffix in _MRC_SUFFIXES:
        raise InvalidInputError(
            f"{volume.url} has {len(volume.channels)} channels and an MRC file holds one",
            hint="export one with {channel=NAME}, or all of them to an OME-TIFF (.tif)",
        )
    if target.exists() and not overwrite:
        raise WriteConflictError(f"{path} exists", hint="pass {overwrite=True} to replace it")
    dtype = chosen.dtype
    if suffix in _MRC_SUFFIXES and dtype.name not in MRC_MODES:
        raise InvalidInputError(
            f"{volume.url}: {dtype} has no MRC mode (MRC holds "
            f"{', '.join(MRC_MODES)}); export it to TIFF instead"
        )
    voxel = chosen.voxel_size
    origin = tuple(
        o + r.start * s
        for o, r, s in zip(chosen.translation[lead:], box, chosen.scale[lead:], strict=True)
    )
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        if suffix in _MRC_SUFFIXES:
            label = f"cellvol export of {volume.url}"
            _write_mrc(partial, chosen, box, voxel, origin, label, imod_unsigned=imod_unsigned)
        else:
            colors = _channel_colors(volume) if lead else None
            _write_tiff(partial, _volumes(volume, level, lead), box, voxel, colors)
        replace_durably(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def parse_region(text: str | None, shape: Sequence[int]) -> tuple[slice, slice, slice]:
    """Parse ``"z0:z1,y0:y1,x0:x1"`` (any part may be empty, ``:`` or a single index).

    Raises
    ------
    InvalidInputError
        If the text is not three comma-separated ranges, or a range is empty or outside
        ``shape``.
    """
    if text is None or not text.strip():
        return _check_region((slice(None),) * 3, shape)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise InvalidInputError(f"region {text!r} needs three ranges z,y,x like 0:64,:,100:200")
    slices: list[slice] = []
    for part in parts:
        try:
            if ":" in part:
                start, stop = part.split(":", 1)
                slices.append(slice(int(start) if start else None, int(stop) if stop else None))
            elif part:
                slices.append(slice(int(part), int(part) + 1))
            else:
                slices.append(slice(None))
        except ValueError:
            raise InvalidInputError(
                f"region {text!r}: {part!r} is not a range of integers like 10:20"
            ) from None
    return _check_region(tuple(slices), shape)


def _check_region(region: tuple[slice, ...], shape: Sequence[int]) -> tuple[slice, slice, slice]:
    if len(region) != 3:
        raise InvalidInputError(f"region needs three slices (z, y, x), got {len(region)}")
    checked: list[slice] = []
    for axis, part, n in zip("zyx", region, shape, strict=True):
        start = 0 if part.start is None else part.start
        stop = n if part.stop is None else part.stop
        if part.step not in (None, 1) or not 0 <= start < stop <= n:
            raise InvalidInputError(
                f"region {axis} = {start}:{stop} is empty or outside the level's 0:{n} "
                f"(shape {tuple(shape)})"
            )
        checked.append(slice(start, stop))
    return (checked[0], checked[1], checked[2])


def _slabs(level: Level, box: tuple[slice, slice, slice]) -> Iterator[npt.NDArray[Any]]:
    """The region's planes in slabs: chunk-deep where that fits in :data:`SLAB_BYTES`."""
    zs, ys, xs = box
    plane = (ys.stop - ys.start) * (xs.stop - xs.start) * level.dtype.itemsize
    depth = max(1, min(level.chunks[0], SLAB_BYTES // max(plane, 1)))
    z = zs.start
    while z < zs.stop:
        # End slabs on chunk boundaries, so no chunk is decoded for two slabs.
        end = min(zs.stop, (z // depth + 1) * depth)
        yield level[z:end, ys, xs]
        z = end


def _write_mrc(
    file: Path,
    level: Level,
    box: tuple[slice, slice, slice],
    voxel: VoxelSize | None,
    origin: Sequence[float],
    label: str,
    *,
    imod_unsigned: bool,
) -> None:
    import mrcfile

    dtype = level.dtype
    shape = tuple(r.stop - r.start for r in box)
    unsigned_bytes = imod_unsigned and dtype == np.uint8
    mode = IMOD_UNSIGNED_MODE if unsigned_bytes else MRC_MODES[dtype.name]
    stats = _Statistics()
    with (
        _without_numpy_deprecations(),
        mrcfile.new_mmap(file, shape=shape, mrc_mode=mode) as mrc,
    ):
        z = 0
        for slab in _slabs(level, box):
            # mrcfile maps mode 0 as int8: IMOD's unsigned bytes go in unchanged, flagged
            # below. Otherwise the assignment converts (uint8 widens into mode 6's uint16).
            mrc.data[z : z + len(slab)] = slab.view(np.int8) if unsigned_bytes else slab
            z += len(slab)
            stats.add(slab)
        header = mrc.header
        header.dmin, header.dmax, header.dmean, header.rms = stats.summary()
        if voxel is not None:
            size = voxel.to("angstrom")
            mrc.voxel_size = (size.x, size.y, size.z)
            header.origin = convert_lengths(reversed(tuple(origin)), voxel.unit, "angstrom")
        mrc.add_label(label[:80])
    if mode == 0:
        _stamp_imod_signedness(file, signed=not unsigned_bytes)


@contextlib.contextmanager
def _without_numpy_deprecations() -> Iterator[None]:
    """Silence the numpy 2.5 deprecations mrcfile triggers: nothing a user could act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class _Statistics:
    """Minimum, maximum, mean and RMS deviation of data seen in pieces, in float64."""

    _PIECE: Final = 2**22  # elements converted to float64 at a time (32 MiB)

    def __init__(self) -> None:
        self.low, self.high = math.inf, -math.inf
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, data: npt.NDArray[Any]) -> None:
        flat = data.reshape(-1)
        for start in range(0, flat.size, self._PIECE):
            piece = flat[start : start + self._PIECE].astype(np.float64)
            self.low = min(self.low, float(piece.min()))
            self.high = max(self.high, float(piece.max()))
            self.total += float(piece.sum())
            self.squares += float(np.dot(piece, piece))
            self.count += piece.size

    def summary(self) -> tuple[float, float, float, float]:
        mean = self.total / self.count
        rms = math.sqrt(max(self.squares / self.count - mean * mean, 0.0))
        return self.low, self.high, mean, rms


def _stamp_imod_signedness(file: Path, *, signed: bool) -> None:
    """Mark mode 0 bytes as signed or unsigned the way IMOD does (stamp and flag bit 0)."""
    with file.open("r+b") as stream:
        stream.seek(IMOD_FIELDS_OFFSET)
        # mrcfile writes new files in the machine's byte order.
        stream.write(struct.pack("=ii", IMOD_STAMP, IMOD_SIGNED_BYTES if signed else 0))


def _volumes(volume: Volume, level: int, lead: int) -> list[tuple[tuple[int, ...], Level, str]]:
    """Each ``(t, c)`` volume of the level, in file order, with its index and channel name.

    A 3-D image is one volume, with an empty index.
    """
    if not lead:
        return [((), volume.level(level), "")]
    steps = volume.shape[0] if lead == 2 else 1
    return [
        ((t, c)[2 - lead :], volume.channel(c, t=t).level(level), name)
        for t in range(steps)
        for c, name in enumerate(volume.channels)
    ]


def _channel_colors(volume: Volume) -> list[int] | None:
    """The channels' stored colours as OME-XML ``Channel/@Color``: signed 32-bit RGBA.

    None unless every channel has a valid ``RRGGBB`` colour in the image's ``omero`` block
    (a file names no colour rather than a made-up one).
    """
    stored = [c.color if c is not None else None for c in stored_channels(volume.attributes)]
    if len(stored) != len(volume.channels):
        return None
    found = []
    for color in stored:
        try:
            rgb = int(channel_color(color), 16) if color is not None else None
        except InvalidInputError:
            rgb = None
        if rgb is None:
            return None
        rgba = (rgb << 8) | 0xFF  # opaque
        found.append(rgba - 2**32 if rgba >= 2**31 else rgba)
    return found


def _write_tiff(
    file: Path,
    volumes: list[tuple[tuple[int, ...], Level, str]],
    box: tuple[slice, slice, slice],
    voxel: VoxelSize | None,
    colors: list[int] | None = None,
) -> None:
    import tifffile

    lead = len(volumes[0][0])
    sizes = [max(index[axis] for index, _, _ in volumes) + 1 for axis in range(lead)]
    shape = (*sizes, *(r.stop - r.start for r in box))
    metadata: dict[str, Any] = {"axes": ("", "C", "TC")[lead] + "ZYX"}
    if lead:
        names = list(dict.fromkeys(name for _, _, name in volumes))
        metadata["Channel"] = {"Name": names}
        if colors is not None:
            metadata["Channel"]["Color"] = colors
    if voxel is not None:
        size = voxel.to("nanometer")
        for axis, value in zip("ZYX", size.zyx, strict=True):
            metadata[f"PhysicalSize{axis}"] = value
            metadata[f"PhysicalSize{axis}Unit"] = "nm"

    def planes() -> Iterator[npt.NDArray[Any]]:
        for _, level, _ in volumes:
            for slab in _slabs(level, box):
                yield from slab

    dtype = volumes[0][1].dtype
    tifffile.imwrite(
        file,
        data=planes(),
        shape=shape,
        dtype=dtype,
        ome=True,
        metadata=metadata,
        bigtiff=math.prod(shape) * dtype.itemsize > _BIGTIFF_AFTER,
        photometric="minisblack",
    )
