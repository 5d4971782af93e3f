"""Segment surfaces over a real server on 127.0.0.1: the mesh list and each mesh's bytes."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.labels._meshes import mesh_index, read_mesh
from cellvol.server import Server
from cellvol.server._meshes import STALE_HEADER


def _decode(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The contract's layout, decoded here independently of cellvol's own decoder."""
    n_vertices, n_triangles = struct.unpack_from("<II", body)
    assert len(body) == 8 + 12 * n_vertices + 12 * n_triangles
    vertices = np.frombuffer(body, "<f4", 3 * n_vertices, 8).reshape(-1, 3)
    triangles = np.frombuffer(body, "<u4", 3 * n_triangles, 8 + 12 * n_vertices).reshape(-1, 3)
    return vertices, triangles


def test_the_list_names_every_segment_with_its_counts_and_url(running) -> None:
    reply = running.request("/meshes/tomo/cells")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    body = json.loads(reply.body)
    stored = mesh_index(running.image, "cells")
    assert stored is not None
    assert body["unit"] == "nanometer"
    assert body["stale"] is False
    assert reply.headers[STALE_HEADER.lower()] == "false"
    assert [s["id"] for s in body["segments"]] == sorted(
        np.unique(running.labels[running.labels > 0])
    )
    for item in body["segments"]:
        entry = stored.segments[item["id"]]
        assert (item["triangles"], item["vertices"]) == (entry.triangles, entry.vertices)
        assert item["url"] == f"/meshes/tomo/cells/{item['id']}"
        assert len(item["color"]) == 4
    annotated = next(s for s in body["segments"] if s["id"] == 2)
    assert annotated["name"] == "mitochondrion"
    assert body["to_image_unit"] == 1.0  # nanometre meshes, a nanometre image


def test_every_listed_segment_has_a_colour_and_micrometre_images_a_factor(
    tmp_path: Path,
) -> None:
    from cellvol.ome._display import label_color

    labels = np.zeros((8, 16, 16), np.uint16)
    labels[1:4, 2:6, 2:6] = 3
    labels[5:7, 8:14, 8:14] = 40_000
    image = tmp_path / "light.ome.zarr"
    cellvol.write_pyramid(
        np.zeros(labels.shape, np.uint8), image, cellvol.VoxelSize(0.5, 0.1, 0.1, "micrometer")
    )
    colours = {3: (10, 20, 30, 255)}
    cellvol.write_labels(image, labels, "cells", colors=colours)
    with Server([str(image)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, image, image, None, None)
        body = json.loads(running.request("/meshes/light/cells").body)
        assert body["to_image_unit"] == 0.001  # nm meshes in a micrometre scene
        found = {s["id"]: tuple(s["color"]) for s in body["segments"]}
        assert found == {3: colours[3], 40_000: tuple(label_color(40_000))}
        catalog = json.loads(running.request("/catalog").body)
        assert catalog["volumes"][0]["nm_per_unit"] == 1000.0


def test_each_mesh_decodes_to_the_stored_one_in_physical_units(running) -> None:
    body = json.loads(running.request("/meshes/tomo/cells").body)
    labels = cellvol.open(running.image).labels["cells"]
    for item in body["segments"]:
        reply = running.request(item["url"])
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/octet-stream"
        vertices, triangles = _decode(reply.body)
        assert (len(vertices), len(triangles)) == (item["vertices"], item["triangles"])
        stored = read_mesh(running.image, "cells", item["id"])
        np.testing.assert_array_equal(vertices, stored.vertices)
        np.testing.assert_array_equal(triangles, stored.triangles)
        # x, y, z in nm, within the segment's physical box (half a voxel of slack each side)
        low, high = np.array(labels.segments[item["id"]]["bbox_physical"])[:, ::-1]
        voxel = np.array(labels.levels[0].scale)[::-1]
        assert (vertices >= low - voxel).all()
        assert (vertices <= high + voxel).all()


def test_a_mesh_is_revalidated_by_its_etag(running) -> None:
    first = running.request("/meshes/tomo/cells/1")
    again = running.request(
        "/meshes/tomo/cells/1", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status == 304


def test_404s_name_the_missing_segment_or_labels(running) -> None:
    reply = running.request("/meshes/tomo/cells/99")
    assert reply.status == 404
    message = json.loads(reply.body)["error"]
    assert "segment 99" in message
    assert "does not exist" in message
    reply = running.request("/meshes/tomo/nuclei")
    assert reply.status == 404
    assert "nuclei" in json.loads(reply.body)["error"]
    reply = running.request("/meshes/elsewhere/cells")
    assert reply.status == 404
    assert "elsewhere" in json.loads(reply.body)["error"]


@pytest.fixture
def meshless(tmp_path: Path) -> Path:
    labels = np.zeros((16, 32, 32), np.uint8)
    labels[4:12, 8:24, 8:24] = 7
    image = tmp_path / "bare.ome.zarr"
    cellvol.write_pyramid(np.zeros(labels.shape, np.uint8), image, (4, 2, 2), n_levels=2)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    return image


def test_labels_without_meshes_answer_404_naming_the_command(meshless: Path) -> None:
    with Server([str(meshless)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, meshless, meshless, None, None)
        for path in ("/meshes/bare/cells", "/meshes/bare/cells/7"):
            reply = running.request(path)
            assert reply.status == 404
            message = json.loads(reply.body)["error"]
            assert "have no meshes" in message
            assert "cellvol meshes IMAGE --labels cells" in message
            assert str(meshless) not in message  # the server's folders are not the client's


def test_an_unreadable_mesh_index_answers_409_naming_the_command(meshless: Path) -> None:
    cellvol.compute_meshes(meshless, "cells")
    index = meshless / "labels" / "cells" / "meshes" / "index.json"
    body = json.loads(index.read_text())
    body["segments"][0]["step"] = 1  # a field another version wrote differently
    index.write_text(json.dumps(body))
    with Server([str(meshless)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, meshless, meshless, None, None)
        for path in ("/meshes/bare/cells", "/meshes/bare/cells/7"):
            reply = running.request(path)
            assert reply.status == 409
            message = json.loads(reply.body)["error"]
            assert "not a readable mesh index" in message
            assert "cellvol meshes IMAGE --labels cells --force" in message


def test_meshes_of_labels_rewritten_since_are_served_marked_stale(meshless: Path) -> None:
    import zarr

    cellvol.compute_meshes(meshless, "cells")
    changed = np.zeros((16, 32, 32), np.uint8)
    changed[2:6, 2:6, 2:6] = 7
    changed[8:16, 0:32, 0:32] = 9
    # Another tool (zarr-python) rewrites the voxels and leaves cellvol's records and meshes.
    zarr.open_array(meshless / "labels" / "cells" / "0", mode="r+")[:] = changed
    with Server([str(meshless)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, meshless, meshless, None, None)
        listing = running.request("/meshes/bare/cells")
        assert listing.status == 200
        assert json.loads(listing.body)["stale"] is True
        mesh = running.request("/meshes/bare/cells/7")
        assert mesh.status == 200
        assert mesh.headers[STALE_HEADER.lower()] == "true"


def test_a_list_of_thousands_of_segments_gives_each_its_colour(tmp_path: Path) -> None:
    from cellvol.ome._display import label_color

    # 1,200 small segments with six-digit IDs (connected components, say): the page draws
    # them from this one list, with no request per segment or per ID batch.
    labels = np.zeros((4, 120, 120), np.uint32)
    ids = 100_000 + 7 * np.arange(1200, dtype=np.uint32)
    for k, segment in enumerate(ids):
        y, x = divmod(k, 40)
        labels[1:3, 3 * y : 3 * y + 2, 3 * x : 3 * x + 2] = segment
    image = tmp_path / "many.ome.zarr"
    cellvol.write_pyramid(np.zeros(labels.shape, np.uint8), image, 1.0)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    cellvol.compute_meshes(image, "cells", smoothing=False)
    with Server([str(image)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, image, image, None, None)
        body = json.loads(running.request("/meshes/many/cells").body)
    assert [s["id"] for s in body["segments"]] == ids.tolist()
    assert all(s["color"] == list(label_color(s["id"])) for s in body["segments"])
