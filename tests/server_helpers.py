"""Shared by the server tests: a raw HTTP client, a served image with labels and annotations."""

import http.client
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cellvol

GREEN, MAGENTA = "00FF00", "FF00FF"
SECRET = b"cellvol-test-secret: must never be served"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Running:
    """A started server: its base URL, the served image's folder, the secret's folder."""

    url: str
    host: str
    port: int
    image: Path
    outside: Path
    data: np.ndarray
    labels: np.ndarray

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Reply:
        """Send ``path`` exactly as written (no client-side normalisation) and read the reply."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        finally:
            connection.close()


def make_image(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 32 x 96 x 128 uint16 image with smooth blobs, labels of them, and one annotation."""
    z, y, x = np.mgrid[0:32, 0:96, 0:128]
    data = (1000 + 300 * np.sin(x / 9.0) * np.cos(y / 11.0) + 10 * z).astype(np.uint16)
    labels = np.zeros(data.shape, np.uint16)
    labels[4:28, 10:50, 10:70] = 1  # crosses the middle plane of every axis
    labels[8:20, 55:90, 70:120] = 2
    data[labels == 2] += 400
    path = root / "tomo.ome.zarr"
    cellvol.write_pyramid(data, path, (8, 4, 4), n_levels=3, chunks=(16, 32, 32))
    cellvol.write_labels(path, labels, "cells")
    cellvol.annotate(
        path, "cells", 2, name="mitochondrion", references=["GO:0005739", "UniProt:P69905"]
    )
    return path, data, labels


def quadrant_channels() -> np.ndarray:
    """A 2-channel (c, z, y, x) uint16 image for the viewers: "membrane" bright on the left
    half, "blobs" on the top half, so each quadrant of an XY plane shows one colour, both, or
    neither."""
    channels = np.zeros((2, 16, 64, 64), np.uint16)
    channels[0, :, :, :32] = 1000
    channels[1, :, :32, :] = 1000
    return channels


def write_quadrant_channels(
    path: Path, ome_version: str, channels: np.ndarray | None = None, axes: str | None = None
) -> None:
    """Write ``quadrant_channels()`` (or ``channels``) named and coloured, one level."""
    cellvol.write_pyramid(
        quadrant_channels() if channels is None else channels,
        path,
        (100, 50, 50),
        n_levels=1,
        ome_version=ome_version,
        axes=axes,
        channel_names=["membrane", "blobs"],
        channel_colors=[GREEN, MAGENTA],
    )
