"""An image's metadata documents: OME-NGFF attributes, display windows, cellvol's own records.

``_metadata`` reads OME-Zarr 0.4/0.5 multiscales leniently and writes 0.5 through
ome-zarr-models; ``_validation`` checks documents against the specification's rules;
``_display`` holds contrast windows and label colours; ``_manifest`` the ``_cellvol/`` records
that a finished write leaves. Nothing here touches array bytes.
"""
