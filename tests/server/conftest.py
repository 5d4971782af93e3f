"""Fixtures of the server's tests.

``running``
    A ``cellvol serve`` server on 127.0.0.1 for the session, serving an image with labels, an
    annotation, and traps for the path-traversal tests (see ``server_helpers.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real server on 127.0.0.1 serving an image with labels, annotations and traps."""
    from server_helpers import SECRET, Running, make_image

    from cellvol.server import Server

    root = tmp_path_factory.mktemp("served")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_bytes(SECRET)
    image, data, labels = make_image(root)
    (root / "secret.txt").write_bytes(SECRET)  # beside the store, not in it
    (image / ".hidden").write_bytes(SECRET)
    os.symlink(outside / "secret.txt", image / "leak")
    os.symlink(outside, image / "0" / "leakdir")
    with Server([str(image)]) as server:
        yield Running(server.url, server.host, server.port, image, outside, data, labels)


@pytest.fixture(scope="session")
def clem_scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server for a linked CLEM pair (``clem_helpers``): ``(url, pair, scene path)``.

    The EM is written without the fiducial beads, so that in the viewer the beads show in the
    LM overlay alone (over the EM's texture, not over the same beads in the EM).
    """
    from clem_helpers import make_pair, synthetic_em

    import cellvol
    from cellvol.server import Server

    em, voxel = synthetic_em()
    pair = make_pair(em, voxel)
    root = tmp_path_factory.mktemp("clem")
    em_path, lm_path = root / "em.ome.zarr", root / "lm.ome.zarr"
    cellvol.write_pyramid(em, em_path, tuple(pair.em_voxel), ome_version="0.6", n_levels=2)
    cellvol.write_pyramid(pair.lm, lm_path, tuple(pair.lm_voxel), ome_version="0.6", n_levels=2)
    scene = root / "cell.scene.zarr"
    cellvol.link(scene, {"em": em_path, "lm": lm_path}, {"lm": pair.affine})
    with Server([f"cell={scene}"]) as server:
        yield server.url, pair, scene


@pytest.fixture(scope="session")
def clem_channels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server for the CLEM pair with its two-channel LM linked: ``(url, pair, scene path)``.

    The LM's channels are "membranes" (green) and "blobs" (magenta, the fiducials); the EM
    is written without the beads, as in ``clem_scene``.
    """
    from clem_helpers import make_pair, synthetic_em
    from server_helpers import GREEN, MAGENTA

    import cellvol
    from cellvol.server import Server

    em, voxel = synthetic_em()
    pair = make_pair(em, voxel)
    root = tmp_path_factory.mktemp("clem-channels")
    em_path, lm_path = root / "em.ome.zarr", root / "lm.ome.zarr"
    cellvol.write_pyramid(em, em_path, tuple(pair.em_voxel), ome_version="0.6", n_levels=2)
    cellvol.write_pyramid(
        pair.lm_channels,
        lm_path,
        tuple(pair.lm_voxel),
        ome_version="0.6",
        n_levels=2,
        axes="czyx",
        channel_names=["membranes", "blobs"],
        channel_colors=[GREEN, MAGENTA],
    )
    scene = root / "cell.scene.zarr"
    cellvol.link(scene, {"em": em_path, "lm": lm_path}, {"lm": pair.affine})
    with Server([f"cell={scene}"]) as server:
        yield server.url, pair, scene


@pytest.fixture(scope="session")
def two_channels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A server for a 2-channel image (green "membrane", magenta "blobs"): ``(url, data)``."""
    import numpy as np
    from server_helpers import GREEN, MAGENTA

    import cellvol
    from cellvol.server import Server

    # Channel "membrane" bright on the left half, "blobs" bright on the top half: each
    # quadrant of an XY plane shows one, both or neither.
    data = np.zeros((2, 8, 64, 64), np.uint16)
    data[0, :, :, :32] = 1000
    data[1, :, :32, :] = 1000
    path = tmp_path_factory.mktemp("channels") / "cells.ome.zarr"
    cellvol.write_pyramid(
        data,
        path,
        (100, 50, 50),
        n_levels=1,
        channel_names=["membrane", "blobs"],
        channel_colors=[GREEN, MAGENTA],
    )
    with Server([str(path)]) as server:
        yield server.url, data
