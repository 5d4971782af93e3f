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
