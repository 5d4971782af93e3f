"""Edits of a finished image (labels, annotations, its crate): one at a time, never on damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol._store import open_store
from cellvol._store._lease import take_lease
from cellvol.errors import IntegrityError, WriteConflictError
from cellvol.ome._manifest import LEASE_KEY
from cellvol.write._digests import refresh_crate

SHAPE = (16, 32, 32)


def _image(root: Path) -> Path:
    dest = root / "image.ome.zarr"
    cellvol.write_pyramid(np.zeros(SHAPE, np.uint8), dest, 2.0, chunks=(16, 16, 16))
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:12, 8:24, 8:24] = 3
    cellvol.write_labels(dest, labels, "cells")
    return dest


def test_an_edit_waits_for_no_one_and_interleaves_with_no_one(tmp_path: Path) -> None:
    image = _image(tmp_path)
    store = open_store(str(image), mode="a")
    before = (image / "labels/cells/zarr.json").read_bytes()
    with take_lease(store, str(image), LEASE_KEY):  # another writer at work on the image
        with pytest.raises(WriteConflictError):
            cellvol.annotate(image, "cells", 3, name="nucleus")
        with pytest.raises(WriteConflictError):
            refresh_crate(image)
        with pytest.raises(WriteConflictError):
            cellvol.write_labels(image, np.zeros(SHAPE, np.uint8), "more")
    assert (image / "labels/cells/zarr.json").read_bytes() == before
    cellvol.annotate(image, "cells", 3, name="nucleus", references=["GO:0005634"])
    assert cellvol.verify(image).intact


def test_no_edit_lands_on_damaged_digests(tmp_path: Path) -> None:
    image = _image(tmp_path)
    digests = image / "labels/cells/_cellvol/digests.json"
    digests.write_text(digests.read_text().replace('"sha256"', '"sha256" ', 1))
    before = {p: p.read_bytes() for p in image.rglob("*.json")}
    with pytest.raises(IntegrityError, match="not rewritten"):
        cellvol.annotate(image, "cells", 3, name="nucleus")
    assert {p: p.read_bytes() for p in image.rglob("*.json")} == before


def test_no_labels_go_into_an_unfinished_image(tmp_path: Path) -> None:
    image = _image(tmp_path)
    (image / "_cellvol/complete.json").unlink()  # as a write stopped before its end leaves it
    with pytest.raises(WriteConflictError, match="not finished"):
        cellvol.write_labels(image, np.zeros(SHAPE, np.uint8), "more")
    assert json.loads((image / "labels/zarr.json").read_text())["attributes"]["ome"]["labels"] == [
        "cells"
    ]
