"""HDF5 datasets, read lazily with h5py by a handle that reopens itself in each process.

An open ``h5py.Dataset`` cannot be pickled, so :class:`Hdf5Dataset` holds the file name and
the dataset's path and opens the file on first use in whatever process reads it (a dask worker
included). Voxel sizes are taken from the attributes the common tools write:
``element_size_um`` (ilastik, Fiji, CREMI: z, y, x in micrometres), ``resolution`` or
``voxel_size`` (z, y, x, in nanometres unless a ``unit`` attribute says otherwise).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError, StoreNotFoundError
from cellvol.formats._channels import reorder_axes, stored_axes
from cellvol.formats._source import Source, float32_meant, metadata_field, metadata_number
from cellvol.units import VoxelSize, check_placement, normalize_unit
from cellvol.write._inputs import OpenedPerProcess, region_of

__all__ = ["Hdf5Dataset", "open_hdf5"]


def open_hdf5(path: str | Path, dataset: str | None = None, axes: str | None = None) -> Source:
    """Open a 3-D dataset of an HDF5 file, or a 4-D or 5-D one with channels and time points.

    Parameters
    ----------
    path
        The file.
    dataset
        The dataset's path in the file; by default the file's only dataset with as many
        dimensions as ``axes`` name (3 without them).
    axes
        The dataset's axes in stored order, e.g. ``"czyx"``, ``"zcyx"`` or ``"tczyx"``
        (default ``"zyx"``); the image is read with its axes as cellvol writes them.

    Raises
    ------
    StoreNotFoundError
        If the file does not exist.
    InvalidInputError
        If it is not an HDF5 file, the dataset is missing, is a group or has other dimensions
        than ``axes`` name, or no dataset was named and the file does not hold exactly one
        with that many dimensions.
    """
    import h5py

    file = Path(path).expanduser()
    name = str(path)
    if not file.is_file():
        raise StoreNotFoundError(f"{name}: no such file")
    try:
        handle = h5py.File(file, "r")
    except OSError as exc:
        raise InvalidInputError(f"{name}: not a readable HDF5 file ({exc})") from exc
    with handle:
        ndim = len(stored_axes(axes, name)) if axes is not None else 3
        key = dataset if dataset is not None else _only_volume(handle, name, ndim)
        # Resolving a path follows its links: a soft link to itself or a cycle of them makes
        # HDF5 give up (RuntimeError), a dangling external link fails to open (KeyError).
        with metadata_field(name, f"dataset path {key!r}"):
            node = handle.get(key)
        if node is None:
            raise InvalidInputError(
                f"{name}: has no dataset {key!r}; its datasets are {_datasets(handle) or 'none'}"
            )
        if not isinstance(node, h5py.Dataset):
            raise InvalidInputError(
                f"{name}: {key!r} is a group, not a dataset; its datasets are "
                f"{_datasets(node) or 'none'}"
            )
        shape = tuple(int(n) for n in node.shape)
        if len(shape) != ndim:
            wanted = f"axes {axes!r}" if axes is not None else "3 axes (z, y, x)"
            hint = "" if axes is not None else "; give its axes (e.g. czyx) for channels"
            raise InvalidInputError(
                f"{name}: dataset {key!r} has shape {shape}; expected {wanted}{hint}"
            )
        dtype = np.dtype(node.dtype)
        if dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{name}: dataset {key!r} holds {dtype}; expected integers or floats"
            )
        with metadata_field(name, f"attributes of {key!r}"):
            attributes = {k: _plain(v) for k, v in node.attrs.items()}
        voxel = _voxel_size(attributes, f"{name}:{node.name}")
        details = {
            "format": "HDF5",
            "file": file.name,
            "dataset": node.name,
            "bytes": file.stat().st_size,
            "chunks": list(node.chunks) if node.chunks else None,
            "compression": node.compression,
            "attributes": attributes,
        }
        full_name = str(node.name)
    stored = Hdf5Dataset(str(file.resolve()), full_name, shape, dtype.str)
    array, names = reorder_axes(stored, axes or "zyx", f"{name}:{full_name}")
    return Source(
        array=array,
        voxel_size=voxel,
        description=(
            f"{file.name}:{full_name}: HDF5 dataset {' × '.join(map(str, shape))} "
            f"({', '.join((axes or 'zyx').strip().lower())}) {dtype.name}"
        ),
        files=(str(file.resolve()),),
        details=details,
        axes=names,
    )


@dataclass(frozen=True)  # not slotted: the open file is cached on the instance
class Hdf5Dataset(OpenedPerProcess):
    """A dataset of an HDF5 file by name, opened on first read in each process."""

    filename: str
    dataset: str
    shape: tuple[int, ...]
    dtype_str: str
    _HANDLES: ClassVar[tuple[str, ...]] = ("_node",)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return np.dtype(self.dtype_str)

    @functools.cached_property
    def _node(self) -> Any:
        import h5py

        return h5py.File(self.filename, "r")[self.dataset]

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        region = region_of(key, self.shape)
        # h5py serialises calls into the HDF5 library, so writer threads can share the handle
        # (two threads racing to open it first merely open the file twice).
        try:
            return np.asarray(self._node[region])
        except OSError as exc:  # what h5py raises for a damaged chunk or a failed filter
            raise InvalidInputError(
                f"{self.filename}:{self.dataset}: cannot read region {region} ({exc})"
            ) from exc


def _only_volume(handle: Any, name: str, ndim: int) -> str:
    volumes = [path for path, shape in _dataset_shapes(handle) if len(shape) == ndim]
    if len(volumes) != 1:
        listing = ", ".join(f"{p} {s}" for p, s in _dataset_shapes(handle)) or "none"
        raise InvalidInputError(
            f"{name}: holds {len(volumes)} {ndim}-D datasets",
            hint=f"name one, as file.h5:/path or with {{dataset='/path'}}; its datasets: {listing}",
        )
    return volumes[0]


def _dataset_shapes(group: Any) -> list[tuple[str, tuple[int, ...]]]:
    import h5py

    found: list[tuple[str, tuple[int, ...]]] = []
    prefix = str(group.name).rstrip("/")

    def visit(path: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            found.append((f"{prefix}/{path}", tuple(node.shape)))

    group.visititems(visit)
    return found


def _datasets(group: Any) -> str:
    return ", ".join(path for path, _ in _dataset_shapes(group))


def _voxel_size(attributes: dict[str, Any], where: str) -> VoxelSize | None:
    """The voxel size the first of the known attributes records, checked; None if none does.

    A size in a unit cellvol does not know is unrecorded; three values that are not positive,
    finite numbers in range are refused, naming the attribute.
    """
    given_unit = str(attributes.get("unit", "nanometer"))
    for key, key_unit in (
        ("element_size_um", "micrometer"),
        ("resolution", given_unit),
        ("voxel_size", given_unit),
    ):
        value = attributes.get(key)
        if not (isinstance(value, list) and len(value) == 3):
            continue
        try:
            unit = normalize_unit(key_unit)
        except InvalidInputError:
            return None
        try:
            sizes = [metadata_number(v, where, f"attribute {key}") for v in value]
        except InvalidInputError:
            raise InvalidInputError(
                f"{where}: attribute {key} is {value}; a voxel size must be a finite number"
            ) from None
        if min(sizes) <= 0:
            raise InvalidInputError(
                f"{where}: attribute {key} is {value}; a voxel size must be positive"
            )
        voxel = VoxelSize.of(sizes, unit).to("nanometer")
        check_placement(voxel, where=f"{where}: attribute {key}")
        return voxel
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    array = np.asarray(value)
    if array.dtype.kind in "SO":
        return [_plain(v) for v in array.tolist()] if array.ndim else str(array.item())
    if array.dtype == np.float32:  # the decimals the file meant, without float32 noise
        return np.vectorize(float32_meant, otypes=[object])(array).tolist()
    if array.dtype.kind in "biuf":
        return array.tolist()
    return str(value)
