"""Reading: :func:`open` any OME-Zarr image and slice its levels numpy-style.

``_open`` finds the image in a store and builds the :class:`Volume`; ``_volume`` holds the
volume and its label images; ``_level`` one level and a :class:`Region` chosen in nm;
``_select`` the arithmetic of choosing levels and voxels; ``_views`` dask, xarray and HTML views;
``_integrity`` the manifest check that tells a lost shard from an empty one; ``_segments`` the
stored segment table of a label image. Nothing here writes.
"""
