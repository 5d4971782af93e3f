"""cellvol: very large 3-D microscopy volumes as pyramidal, sharded OME-Zarr.

Convert a file with :func:`convert` (MRC, TIFF, HDF5, zarr) or write an array with
:func:`write_pyramid`, open any OME-Zarr image with :func:`open`, slice it numpy-style, and
:func:`export` a region back to MRC or TIFF::

    import cellvol
    vol = cellvol.open("s3://bucket/tomogram.ome.zarr")
    plane = vol[100]              # full-resolution z plane, a numpy array
    overview = vol.level(-1)[:]   # the coarsest level
"""

from cellvol._version import __version__
from cellvol.convert import convert
from cellvol.errors import (
    CellvolError,
    CellvolWarning,
    IntegrityError,
    InvalidInputError,
    LayoutError,
    LevelError,
    MetadataError,
    NotOMEZarrError,
    ReadOnlyStoreError,
    SourceChangedError,
    StoreNotFoundError,
    UnsupportedURLError,
    WriteConflictError,
)
from cellvol.export import export
from cellvol.progress import ProgressEvent
from cellvol.read import Level, Volume, open
from cellvol.spec import VoxelSize
from cellvol.write import write_pyramid

__all__ = [
    "CellvolError",
    "CellvolWarning",
    "IntegrityError",
    "InvalidInputError",
    "LayoutError",
    "Level",
    "LevelError",
    "MetadataError",
    "NotOMEZarrError",
    "ProgressEvent",
    "ReadOnlyStoreError",
    "SourceChangedError",
    "StoreNotFoundError",
    "UnsupportedURLError",
    "Volume",
    "VoxelSize",
    "WriteConflictError",
    "__version__",
    "convert",
    "export",
    "open",
    "write_pyramid",
]
