"""Files in and out: MRC, TIFF, HDF5, ``.npy`` and zarr inputs; MRC and TIFF exports.

Each reader (``_mrc``, ``_tiff``, ``_hdf5``, ``_npy``, ``_zarr``) opens a file as a
:class:`Source`: a lazy array read region by region, its voxel size, and what the file says of
itself, checked before anything is written. ``_open`` picks the reader from the name;
``_ingest`` is :func:`convert` (a source through :func:`cellvol.write_pyramid`, with the inputs'
SHA-256 in the provenance); ``_export`` writes a region of a level back to MRC or TIFF.
"""
