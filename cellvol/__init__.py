"""cellvol: very large 3-D microscopy volumes as pyramidal, sharded OME-Zarr.

Write a volume with :func:`write_pyramid`, open any OME-Zarr image with :func:`open`, and
slice it numpy-style::

    import cellvol
    vol = cellvol.open("s3://bucket/tomogram.ome.zarr")
    plane = vol[100]              # full-resolution z plane, a numpy array
    overview = vol.level(-1)[:]   # the coarsest level
"""

from cellvol._version import __version__
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
    StoreNotFoundError,
    UnsupportedURLError,
    WriteConflictError,
)
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
    "StoreNotFoundError",
    "UnsupportedURLError",
    "Volume",
    "VoxelSize",
    "WriteConflictError",
    "__version__",
    "open",
    "write_pyramid",
]
