"""Segmentations: label images written beside their image, segment tables, annotations.

``_write`` writes a label pyramid (:func:`write_labels`) and its ``image-label`` metadata;
``_segments`` computes and stores the segment table; ``_meshes`` each segment's surface
(marching cubes and smoothing in ``_surface``, the stored layout in ``_mesh_store``);
``_sff`` reads and writes EMDB-SFF; ``_annotate`` sets names, descriptions and
external references on segments; ``_references`` knows the databases those point to (UniProt,
GO, PDB, EMDB...). Reading label images is :mod:`cellvol.read`'s job (``volume.labels``).
"""
