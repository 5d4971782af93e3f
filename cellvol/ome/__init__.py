"""An image's metadata documents: OME-NGFF attributes, display windows, cellvol's own records.

``_metadata`` reads OME-Zarr 0.4 to 0.6 multiscales leniently (``_coords06`` turns 0.6
transformations into scales, translations and matrices) and writes 0.5, or 0.6 through
``_write06``, via ome-zarr-models; ``_validation`` (0.4, 0.5) and ``_validation06`` with
``_transforms06`` (0.6) check documents against the specification's rules, sharing ``_rules``
and ``_sections``; ``_hierarchy`` validates what a path names, following 0.6 references between
groups; ``_display`` holds contrast windows and label colours; ``_manifest`` the ``_cellvol/``
records that a finished write leaves; ``_scene`` writes and reads 0.6 scenes (images placed in
each other's space) and composes their transformations, ``_points`` fits an affine to point
pairs. Nothing here touches array bytes.
"""
