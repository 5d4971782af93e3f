"""A real server on 127.0.0.1 serving an image with labels, annotations and traps."""

import os
from collections.abc import Iterator

import pytest
from server_helpers import SECRET, Running, make_image


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
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
