"""Where bytes live: paths and URLs opened as zarr stores, and plain objects in them.

Private: the layers above use :func:`open_store` and the object helpers; users pass paths and
URLs to :func:`cellvol.open` and :func:`cellvol.write_pyramid` instead. Modules, one concern
each: ``_location`` (parsing), ``_options`` (storage options), ``_open`` (the modes and what
each guarantees), ``_local``, ``_s3``, ``_http``, ``_zip`` (the backends), ``_s3fs`` and
``_retry`` (S3 requests retried within a budget; bodies whole or not at all), ``_objects``
(whole-object reads and writes, listing, deletion), ``_readahead`` (hints of local reads to
come), ``_durable`` (syncing to stable storage), ``_nodes`` (zarr groups and arrays found in a
store), ``_loop`` (event loops), ``_sessions`` (closing the network sessions of the
filesystems opened). This layer knows nothing of OME metadata or pyramids.
"""

from cellvol._store._ahead import ReadAhead
from cellvol._store._durable import make_durable, replace_durably, start_writeback
from cellvol._store._location import METADATA_KEYS, SUPPORTED, Location, join, parse_location
from cellvol._store._loop import on_zarr_loop, run_in_fresh_loop
from cellvol._store._objects import (
    delete_all_but,
    delete_prefix,
    is_local_store,
    list_keys,
    list_sizes,
    object_size,
    read_bytes,
    read_objects,
    read_range,
    read_tail,
    write_bytes,
)
from cellvol._store._open import MODES, Mode, open_store
from cellvol._store._readahead import will_read, will_read_file
from cellvol._store._s3 import S3Store
from cellvol._store._sessions import close_sessions
from cellvol._store._zip import Archive, open_archive

__all__ = [
    "METADATA_KEYS",
    "Archive",
    "MODES",
    "SUPPORTED",
    "Location",
    "Mode",
    "ReadAhead",
    "S3Store",
    "close_sessions",
    "delete_all_but",
    "delete_prefix",
    "is_local_store",
    "join",
    "list_keys",
    "list_sizes",
    "make_durable",
    "object_size",
    "on_zarr_loop",
    "open_archive",
    "open_store",
    "parse_location",
    "read_bytes",
    "read_objects",
    "read_range",
    "read_tail",
    "replace_durably",
    "run_in_fresh_loop",
    "start_writeback",
    "will_read",
    "will_read_file",
    "write_bytes",
]
