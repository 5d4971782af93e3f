"""MRC / MRCS / REC / MAP files (MRC2014, as tomography and EMDB maps use it), memory-mapped.

The header is read and checked with mrcfile before any data is touched: the mode, the three
dimensions against the file's size, the axis order. The voxels are then memory-mapped by file
name and offset, so a region read touches only that region's bytes, and a worker in another
process reopens the file instead of receiving its data.

Conventions
-----------
Axes
    The stored axes are always ``z, y, x``. The header's ``mapc, mapr, maps`` say which of
    X, Y, Z the file's columns, rows and sections run along; the data is permuted lazily to
    match (EMDB maps with ``3, 1, 2`` are common).
Voxel size
    ``cella / (mx, my, mz)``, in ångström in the file; cellvol stores nanometres. An axis with
    a zero size is unknown; for a single image (one section) the z size is then taken from x.
    Header values are float32; each is read as the shortest decimal that rounds to the same
    float32 (166.8 Å, not 166.8000030517578), and the cell is divided in decimal.
Origin
    The position of the first voxel: the header's ``origin`` when it is not zero, otherwise
    ``nxstart, nystart, nzstart`` (counted along columns, rows and sections) times the voxel
    size. This is the rule UCSF ChimeraX follows.
Mode 0
    MRC2014 defines mode 0 as signed bytes. IMOD wrote unsigned bytes before version 4.2.23
    and marks files it writes with a stamp: when that stamp is present and its "signed" flag
    is clear the bytes are unsigned. ``int8="auto"`` follows these rules; ``"signed"`` or
    ``"unsigned"`` override them.
Image stacks
    ``ispg`` 0 with more than one section, or an ``.mrcs`` file, is a stack of separate images
    (a tilt series, micrographs, particles): z is not downsampled. Volume stacks
    (``ispg`` 401, 4-D) are refused.
"""

from __future__ import annotations

import math
import struct
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import mrcfile
import mrcfile.utils
import numpy as np

from cellvol.errors import CellvolWarning, InvalidInputError, StoreNotFoundError
from cellvol.formats._imod import IMOD_FIELDS_OFFSET, IMOD_SIGNED_BYTES, IMOD_STAMP
from cellvol.formats._source import Source, float32_meant
from cellvol.units import ORIGIN_LIMIT_NM, VoxelSize, check_placement, convert_lengths
from cellvol.write._inputs import MemmapSource, Transposed

__all__ = ["SUPPORTED_MODES", "open_mrc"]

#: MRC modes a tomogram or map uses, with the element type cellvol stores.
SUPPORTED_MODES: Final[dict[int, str]] = {
    0: "int8 (or uint8, see int8=)",
    1: "int16",
    2: "float32",
    6: "uint16",
    12: "float16",
}
_OTHER_MODES: Final[dict[int, str]] = {
    3: "complex int16 (Fourier transforms)",
    4: "complex float32 (Fourier transforms)",
    101: "4-bit packed integers",
}
_HEADER_BYTES: Final = 1024
# Fields of each MRC header worth keeping in the provenance record.
_HEADER_FIELDS: Final = (
    "nx", "ny", "nz", "mode", "nxstart", "nystart", "nzstart", "mx", "my", "mz",
    "mapc", "mapr", "maps", "dmin", "dmax", "dmean", "ispg", "nsymbt", "nversion", "rms",
)  # fmt: skip


def open_mrc(path: str | Path, *, int8: Literal["auto", "signed", "unsigned"] = "auto") -> Source:
    """Open an MRC file as a lazy ``(z, y, x)`` volume, checking its header first.

    Parameters
    ----------
    path
        The file.
    int8
        Mode 0 bytes: ``"auto"`` (signed unless an IMOD stamp says unsigned), ``"signed"``
        or ``"unsigned"``.

    Returns
    -------
    Source
        With the voxel size in nanometres (None if the header records none), the origin, and
        the header fields and extended-header summary in ``details``.

    Raises
    ------
    StoreNotFoundError
        If the file does not exist.
    InvalidInputError
        If it is not an MRC file, uses an unsupported mode, or its header disagrees with the
        file (dimensions, size, axis order); nothing is allocated for what the header claims.
    """
    file = Path(path).expanduser()
    name = str(path)
    if int8 not in ("auto", "signed", "unsigned"):
        raise InvalidInputError(f"int8 must be 'auto', 'signed' or 'unsigned', got {int8!r}")
    if not file.exists():
        raise StoreNotFoundError(f"{name}: no such file")
    if not file.is_file():
        raise InvalidInputError(f"{name}: not a file")
    size = file.stat().st_size
    if size < _HEADER_BYTES:
        raise InvalidInputError(
            f"{name}: {size} bytes is too short for an MRC file (its header alone is "
            f"{_HEADER_BYTES} bytes)"
        )
    head = _check_raw_header(file, name, size)
    header, extended = _read_header(file, name)

    mode = int(header.mode)
    if mode not in SUPPORTED_MODES:
        what = _OTHER_MODES.get(mode, "not an MRC2014 mode")
        raise InvalidInputError(
            f"{name}: MRC mode {mode} ({what}) is not supported; cellvol converts modes "
            + ", ".join(f"{m} ({t})" for m, t in SUPPORTED_MODES.items())
        )
    counts = (int(header.nx), int(header.ny), int(header.nz))  # columns, rows, sections
    if any(n < 1 for n in counts):
        raise InvalidInputError(
            f"{name}: header dimensions nx, ny, nz = {counts} must all be positive"
        )
    ispg = int(header.ispg)
    if 401 <= ispg <= 630:
        raise InvalidInputError(
            f"{name}: space group {ispg} marks a stack of volumes (4-D); cellvol converts one "
            "volume or one image stack per file"
        )
    axis_order = (int(header.mapc), int(header.mapr), int(header.maps))
    if sorted(axis_order) != [1, 2, 3]:
        raise InvalidInputError(
            f"{name}: header axis order mapc, mapr, maps = {axis_order} is not a permutation "
            "of 1, 2, 3 (X, Y, Z)"
        )
    nsymbt = int(header.nsymbt)

    dtype = mrcfile.utils.data_dtype_from_header(header)
    if mode == 0 and _bytes_unsigned(head, header, int8):
        dtype = np.dtype(np.uint8)
    offset = _HEADER_BYTES + nsymbt
    expected = offset + math.prod(counts) * dtype.itemsize
    if size != expected:
        problem = "truncated" if size < expected else "longer than its header says"
        raise InvalidInputError(
            f"{name}: file is {problem}: header dimensions {counts[0]} × {counts[1]} × "
            f"{counts[2]} of mode {mode} with a {nsymbt}-byte extended header need "
            f"{expected:,} bytes, the file has {size:,}"
        )

    # The file's own axes are (sections, rows, columns); bring X, Y, Z to (z, y, x).
    file_axes = (counts[2], counts[1], counts[0])
    mapped = MemmapSource(str(file.resolve()), dtype.str, file_axes, offset)
    position = {axis_order[2]: 0, axis_order[1]: 1, axis_order[0]: 2}  # axis -> file position
    permutation = (position[3], position[2], position[1])
    array: Any = mapped if permutation == (0, 1, 2) else Transposed(mapped, permutation)
    shape_zyx = tuple(file_axes[p] for p in permutation)

    is_stack = file.suffix.lower() == ".mrcs" or (ispg == 0 and shape_zyx[0] > 1)
    voxel = _voxel_size(header, shape_zyx[0], name)
    origin = _origin(header, axis_order, voxel, name)
    kind = "image stack" if is_stack else "volume"
    description = (
        f"{file.name}: MRC {kind} {shape_zyx[0]} × {shape_zyx[1]} × {shape_zyx[2]} "
        f"(z, y, x) mode {mode} {dtype.name}, {size:,} bytes"
    )
    details: dict[str, Any] = {
        "format": "MRC",
        "file": file.name,
        "bytes": size,
        "header": {key: _plain(header[key]) for key in _HEADER_FIELDS},
        "cella_angstrom": [float32_meant(header.cella[axis]) for axis in ("x", "y", "z")],
        "origin_angstrom": [float32_meant(header.origin[axis]) for axis in ("x", "y", "z")],
        "labels": _labels(header),
        "dtype": dtype.name,
        "image_stack": is_stack,
    }
    if nsymbt:
        details["extended_header"] = _extended_summary(header, extended, nsymbt)
    return Source(
        array=array,
        voxel_size=voxel,
        description=description,
        files=(str(file.resolve()),),
        origin=origin,
        image_stack=is_stack,
        details=details,
    )


def _check_raw_header(file: Path, name: str, size: int) -> bytes:
    """Refuse a file with no MRC identifier or an impossible NSYMBT, before mrcfile reads it.

    mrcfile would read (and allocate) an extended header of whatever size NSYMBT claims.
    Returns the header's 1024 bytes.
    """
    with file.open("rb") as stream:
        head = stream.read(_HEADER_BYTES)
    if head[208:212] != b"MAP ":
        raise InvalidInputError(
            f"{name}: not an MRC file (no 'MAP ' identifier at byte 208 of the header)"
        )
    # The machine stamp at byte 212 says the byte order: 0x44 little-endian, 0x11 big-endian.
    order = ">" if head[212] == 0x11 else "<"
    (nsymbt,) = struct.unpack_from(f"{order}i", head, 92)
    if nsymbt < 0:
        raise InvalidInputError(f"{name}: negative extended header size nsymbt = {nsymbt}")
    if _HEADER_BYTES + nsymbt > size:
        raise InvalidInputError(
            f"{name}: file is truncated: its header announces a {nsymbt:,}-byte extended header "
            f"but the file has {size:,} bytes"
        )
    return head


def _read_header(file: Path, name: str) -> tuple[Any, Any]:
    """The main and extended headers, read by mrcfile without touching the data block."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(file, mode="r", permissive=True, header_only=True) as mrc:
                header = mrc.header.copy()
                extended = _indexed_extended_header(mrc)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidInputError(f"{name}: not a readable MRC file ({exc})") from exc
    for warning in caught:
        text = str(warning.message)
        # mrcfile reads on regardless in permissive mode; cellvol refuses what it flags. (A
        # missing 'MAP ' identifier was refused already, by _check_raw_header.)
        if "machine stamp" in text.lower() or "byte order" in text.lower():
            raise InvalidInputError(f"{name}: unreadable MRC header ({text})")
    return header, extended


def _indexed_extended_header(mrc: Any) -> Any:
    """FEI extended headers as structured records (one per section); None for other kinds."""
    kind = bytes(mrc.header.exttyp).strip(b"\x00 ")
    if not kind.startswith(b"FEI") or mrc.extended_header is None:
        return None
    try:
        records = mrc.indexed_extended_header
    except (ValueError, TypeError, AttributeError):
        return None  # undecodable: kept as type and size only
    return None if records is None else np.array(records, copy=True)


def _bytes_unsigned(head: bytes, header: Any, int8: str) -> bool:
    if int8 != "auto":
        return int8 == "unsigned"
    # In the byte order mrcfile settled on (it can guess when the machine stamp is wrong).
    order = header.mode.dtype.byteorder.replace("=", "<" if np.little_endian else ">")
    stamp, flags = np.frombuffer(
        head[IMOD_FIELDS_OFFSET : IMOD_FIELDS_OFFSET + 8], dtype=f"{order}i4"
    )
    return bool(stamp == IMOD_STAMP and not (flags & IMOD_SIGNED_BYTES))


def _voxel_size(header: Any, depth: int, name: str) -> VoxelSize | None:
    sampling = (int(header.mx), int(header.my), int(header.mz))
    cell = (float(header.cella.x), float(header.cella.y), float(header.cella.z))
    for axis, length in zip("xyz", cell, strict=True):
        # Zero is the convention for "not recorded"; NaN, infinity or a negative length is
        # a damaged header, and guessing past it would store a wrong size.
        if not (math.isfinite(length) and length >= 0):
            raise InvalidInputError(
                f"{name}: header cella.{axis} is {float32_meant(length)} Å; a cell length must "
                "be a finite number, positive (or 0 when not recorded)"
            )
    x, y, z = (
        _voxel_meant(c, m) if m > 0 and c > 0 else 0.0 for c, m in zip(cell, sampling, strict=True)
    )
    if z == 0 and depth == 1 and x > 0:
        z = x  # one image: its thickness is never used, keep the voxel isotropic
    if min(x, y, z) <= 0:
        return None
    voxel = VoxelSize(z, y, x, "angstrom").to("nanometer")
    check_placement(voxel, where=f"{name}: header cella / (mx, my, mz)")
    return voxel


def _voxel_meant(cell: float, sampling: int) -> float:
    """One voxel's size from a float32 cell length, as the decimal the file meant.

    The cell's decimal (33.03, not 33.029998779296875) is divided in decimal and the result
    kept to float32's precision, as the header has it: 33.03 Å over 72 voxels is 0.45875 Å
    (not 0.45874998304578996), and an FEI cell of 3710 pixels of 0.8537755 Å gives that back.
    """
    return float32_meant(float(Decimal(repr(float32_meant(cell))) / sampling))


def _origin(
    header: Any, axis_order: tuple[int, int, int], voxel: VoxelSize | None, name: str
) -> tuple[float, float, float] | None:
    if voxel is None:
        return None
    raw = tuple(float32_meant(header.origin[axis]) for axis in ("x", "y", "z"))
    if all(math.isfinite(v) for v in raw):
        origin_xyz = convert_lengths(raw, "angstrom", "nanometer")
        if any(origin_xyz) and max(abs(v) for v in origin_xyz) <= ORIGIN_LIMIT_NM:
            return (origin_xyz[2], origin_xyz[1], origin_xyz[0])
    if not all(math.isfinite(v) for v in raw) or any(v != 0 for v in raw):
        # An origin no instrument records (NaN, infinity, 1e38: uninitialised memory) says
        # nothing of where the image is; the voxels are sound. Placed by the rule for an unset
        # origin, as ChimeraX does, and said so; the header's value stays in the provenance.
        warnings.warn(
            f"{name}: header origin (x, y, z) = {raw} Å is not a usable position; the image "
            "is placed as if the origin were unset (by nxstart, nystart, nzstart)",
            CellvolWarning,
            stacklevel=3,
        )
    starts = (int(header.nxstart), int(header.nystart), int(header.nzstart))  # col, row, sec
    start_xyz = [0, 0, 0]
    for start, axis in zip(starts, axis_order, strict=True):
        start_xyz[axis - 1] = start
    if not any(start_xyz):
        return None
    # In decimal, so that 3 voxels of 0.0834 nm start at 0.2502, not 0.25020000000000003.
    return (
        float(start_xyz[2] * Decimal(repr(voxel.z))),
        float(start_xyz[1] * Decimal(repr(voxel.y))),
        float(start_xyz[0] * Decimal(repr(voxel.x))),
    )


def _labels(header: Any) -> list[str]:
    count = min(max(int(header.nlabl), 0), 10)
    return [bytes(header.label[i]).decode("ascii", "replace").rstrip("\x00 ") for i in range(count)]


def _extended_summary(header: Any, extended: Any, nsymbt: int) -> dict[str, Any]:
    """The extended header's type and size, and for indexed (FEI) ones the first record."""
    kind = bytes(header.exttyp).decode("ascii", "replace").strip("\x00 ")
    summary: dict[str, Any] = {"type": kind or "unspecified", "bytes": nsymbt}
    if extended is not None and extended.dtype.names and len(extended):
        summary["records"] = len(extended)
        summary["first_record"] = {
            field: _plain(extended[0][field])
            for field in extended.dtype.names
            if not field.lower().startswith("unused")
        }
    return summary


def _plain(value: Any) -> Any:
    """A numpy scalar or small array as JSON-ready Python values."""
    array = np.asarray(value)
    if array.dtype.kind in "SV":
        return bytes(array.tobytes()).decode("ascii", "replace").strip("\x00 ")
    if array.ndim:
        return [_plain(item) for item in array]
    item = float32_meant(array.item()) if array.dtype == np.float32 else array.item()
    if isinstance(item, float) and not math.isfinite(item):
        return str(item)
    return item
