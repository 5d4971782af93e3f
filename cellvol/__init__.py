"""cellvol: very large 3-D microscopy volumes as pyramidal, sharded OME-Zarr.

Convert a file with :func:`convert` (MRC, TIFF, HDF5, zarr) or write an array with
:func:`write_pyramid`, open any OME-Zarr image with :func:`open`, slice it numpy-style, and
:func:`export` a region back to MRC or TIFF::

    import cellvol
    vol = cellvol.open("s3://bucket/tomogram.ome.zarr")
    plane = vol[100]              # full-resolution z plane, a numpy array
    overview = vol.level(-1)[:]   # the coarsest level
"""

from typing import TYPE_CHECKING, Any

from cellvol._codec._cache import ChunkCache
from cellvol._version import __version__
from cellvol.errors import (
    AccessDeniedError,
    AddressInUseError,
    CellvolError,
    CellvolWarning,
    EndpointUnreachableError,
    IntegrityError,
    InvalidInputError,
    LayoutError,
    LevelError,
    MetadataError,
    NotOMEZarrError,
    ReadOnlyStoreError,
    SourceChangedError,
    StoreNotFoundError,
    StoreUnavailableError,
    UnsupportedURLError,
    WriteConflictError,
)
from cellvol.formats._export import export  # light: its format libraries load when it runs
from cellvol.labels._mesh_store import Mesh, MeshEntry, MeshIndex
from cellvol.labels._references import Reference
from cellvol.progress import ProgressEvent
from cellvol.read._level import Level, Region
from cellvol.read._open import open
from cellvol.read._segments import SegmentTable
from cellvol.read._volume import LabelImage, Labels, Volume
from cellvol.units import VoxelSize
from cellvol.write._allocator import tune_allocator

if TYPE_CHECKING:
    from cellvol.formats._ingest import convert
    from cellvol.formats._ozx import pack, unpack
    from cellvol.integrity._report import Problem, VerifyReport
    from cellvol.integrity._verify import verify
    from cellvol.labels._annotate import annotate, annotate_from_file
    from cellvol.labels._meshes import compute_meshes, mesh_index, read_mesh
    from cellvol.labels._write import write_labels
    from cellvol.ome._hierarchy import Validation, validate
    from cellvol.read._scene import Scene, open_scene
    from cellvol.write._link import LinkResult, link
    from cellvol.write._pyramid import WriteResult, write_pyramid

# Writing pulls in dask (about a second to import); reading does not need it. These names are
# imported on first use, so `import cellvol; cellvol.open(...)` starts fast. (Their modules
# must not share the function's name: importing a submodule binds its name on the package.)
_LAZY = {
    "LinkResult": "cellvol.write._link",
    "Problem": "cellvol.integrity._report",
    "Scene": "cellvol.read._scene",
    "Validation": "cellvol.ome._hierarchy",
    "VerifyReport": "cellvol.integrity._report",
    "WriteResult": "cellvol.write._pyramid",
    "annotate": "cellvol.labels._annotate",
    "annotate_from_file": "cellvol.labels._annotate",
    "compute_meshes": "cellvol.labels._meshes",
    "mesh_index": "cellvol.labels._meshes",
    "read_mesh": "cellvol.labels._meshes",
    "convert": "cellvol.formats._ingest",
    "link": "cellvol.write._link",
    "open_scene": "cellvol.read._scene",
    "pack": "cellvol.formats._ozx",
    "unpack": "cellvol.formats._ozx",
    "validate": "cellvol.ome._hierarchy",
    "verify": "cellvol.integrity._verify",
    "write_labels": "cellvol.labels._write",
    "write_pyramid": "cellvol.write._pyramid",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellvol' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public names only, the lazy ones included, for tab completion in notebooks.
    return sorted(__all__)


__all__ = [
    "AccessDeniedError",
    "AddressInUseError",
    "CellvolError",
    "ChunkCache",
    "CellvolWarning",
    "EndpointUnreachableError",
    "IntegrityError",
    "InvalidInputError",
    "LabelImage",
    "Labels",
    "LayoutError",
    "Level",
    "LevelError",
    "LinkResult",
    "Mesh",
    "MeshEntry",
    "MeshIndex",
    "MetadataError",
    "NotOMEZarrError",
    "Problem",
    "ProgressEvent",
    "ReadOnlyStoreError",
    "Reference",
    "Region",
    "Scene",
    "SegmentTable",
    "SourceChangedError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnsupportedURLError",
    "Validation",
    "VerifyReport",
    "Volume",
    "VoxelSize",
    "WriteConflictError",
    "WriteResult",
    "__version__",
    "annotate",
    "annotate_from_file",
    "compute_meshes",
    "convert",
    "export",
    "link",
    "mesh_index",
    "open",
    "open_scene",
    "pack",
    "read_mesh",
    "tune_allocator",
    "unpack",
    "validate",
    "verify",
    "write_labels",
    "write_pyramid",
]
