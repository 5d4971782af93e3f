"""Writing: :func:`write_pyramid` turns any 3-D array into a sharded OME-Zarr pyramid.

``_plan`` decides level shapes, factors, chunks, shards and tasks (pure arithmetic);
``_downsample`` holds the kernels (pure numpy); ``_tasks`` runs a stage's tasks on threads or a
dask cluster; ``_ledger`` records finished shards so a write resumes; ``_inputs`` is what the
writer accepts as input (lazy arrays that pickle to workers); ``_buffers`` reuses shard
buffers; ``_pyramid`` ties them together. Nothing here imports an input format or the server.
"""
