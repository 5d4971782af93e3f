"""Tiles, slices, the catalog and segment look-ups over a real server on 127.0.0.1."""

import io
import json
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

import cellvol
from cellvol.server import Served, Server, serve_name
from cellvol.server._render import render


def _image(reply) -> np.ndarray:
    assert reply.status == 200, reply.body[:300]
    return np.asarray(Image.open(io.BytesIO(reply.body)).convert("RGB"))


def _grey(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    return render(plane, (low, high))[..., 0]


def test_tiles_are_256_pixels_with_edge_tiles_clipped(running) -> None:
    full = _image(running.request("/tiles/tomo/0/z/5/0/0.png"))
    assert full.shape == (96, 128, 3)  # the plane is smaller than one tile
    window = cellvol.open(running.image).window
    np.testing.assert_array_equal(full[..., 0], _grey(running.data[5], window.start, window.end))
    side = _image(running.request("/tiles/tomo/0/x/7/0/0.png"))
    assert side.shape == (32, 96, 3)  # YZ: z rows, y columns
    assert running.request("/tiles/tomo/0/z/5/1/0.png").status == 404
    assert running.request("/tiles/tomo/0/z/99/0/0.png").status == 404
    assert running.request("/tiles/tomo/9/z/0/0/0.png").status == 404


@pytest.mark.parametrize(
    ("fmt", "media"), [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")]
)
def test_tile_formats(running, fmt: str, media: str) -> None:
    reply = running.request(f"/tiles/tomo/1/y/20/0/0.{fmt}")
    assert reply.headers["content-type"] == media
    assert _image(reply).shape == (32, 64, 3)  # level 1 is 32 x 48 x 64 (z kept)


def test_a_query_window_changes_the_contrast(running) -> None:
    plane = running.data[10]
    reply = running.request("/tiles/tomo/0/z/10/0/0.png?window=900,1100")
    np.testing.assert_array_equal(_image(reply)[..., 0], _grey(plane, 900, 1100))


def test_colormaps_and_unknown_ones(running) -> None:
    coloured = _image(running.request("/tiles/tomo/0/z/10/0/0.png?cmap=viridis"))
    assert not np.array_equal(coloured[..., 0], coloured[..., 2])  # not grey
    reply = running.request("/tiles/tomo/0/z/10/0/0.png?cmap=rainbow-unicorn")
    assert reply.status == 400
    assert b"unknown colour map" in reply.body


def test_the_label_overlay_colours_segments(running) -> None:
    plain = _image(running.request("/tiles/tomo/0/z/10/0/0.png"))
    overlaid = _image(running.request("/tiles/tomo/0/z/10/0/0.png?labels=cells&alpha=0.8"))
    inside = running.labels[10] > 0
    assert (plain[inside] != overlaid[inside]).any(axis=-1).all()
    np.testing.assert_array_equal(plain[~inside], overlaid[~inside])  # background untouched
    assert running.request("/tiles/tomo/0/z/10/0/0.png?labels=nope").status == 404
    assert running.request("/tiles/tomo/0/z/10/0/0.png?labels=cells&alpha=2").status == 400


def test_any_region_of_a_plane(running) -> None:
    reply = running.request(
        "/slice/tomo.png?axis=y&index=40&level=0&rows=2:30&cols=5:100&window=800,1500"
    )
    np.testing.assert_array_equal(
        _image(reply)[..., 0], _grey(running.data[2:30, 40, 5:100], 800, 1500)
    )
    for query, message in [
        ("axis=w", b"axis must be z"),
        ("rows=5", b"rows must be start:stop"),
        ("rows=50:40", b"selects nothing"),
        ("window=3", b"window must be low,high"),
        ("window=5,1", b"high must exceed low"),
        ("level=x", b"level must be an integer"),
        ("alpha=nan", b"alpha must be finite"),
    ]:
        bad = running.request(f"/slice/tomo.png?{query}")
        assert bad.status == 400, query
        assert message in bad.body, query
    assert running.request("/slice/tomo.gif").status == 400


def test_images_carry_cache_headers_and_answer_304(running) -> None:
    reply = running.request("/tiles/tomo/0/z/3/0/0.png")
    assert "max-age" in reply.headers["cache-control"]
    again = running.request(
        "/tiles/tomo/0/z/3/0/0.png", headers={"If-None-Match": reply.headers["etag"]}
    )
    assert again.status == 304
    other = running.request("/tiles/tomo/0/z/3/0/0.png?window=1,2")
    assert other.headers["etag"] != reply.headers["etag"]


def test_the_catalog_lists_levels_labels_and_annotations(running) -> None:
    reply = running.request("/catalog")
    (entry,) = json.loads(reply.body)["volumes"]
    assert entry["name"] == "tomo"
    assert entry["data"] == f"{running.url}data/tomo/"
    assert [level["shape"] for level in entry["levels"]] == [
        [32, 96, 128],
        [32, 48, 64],
        [16, 24, 32],
    ]
    assert entry["levels"][0]["voxel_size"] == [8.0, 4.0, 4.0]
    assert entry["window"] == cellvol.open(running.image).window.to_json()
    (labels,) = entry["labels"]
    assert labels["name"] == "cells"
    assert labels["segments"] == 2
    assert labels["annotations"]["2"]["name"] == "mitochondrion"
    link = urllib.parse.unquote(entry["neuroglancer"])
    assert f"zarr3://{running.url}data/tomo/" in link


def test_the_segment_under_a_voxel(running) -> None:
    inside = json.loads(running.request("/segment/tomo/cells?z=10&y=60&x=80").body)
    assert inside["id"] == 2
    assert inside["segment"]["voxel_count"] == int((running.labels == 2).sum())
    assert [r["accession"] for r in inside["properties"]["references"]] == ["GO:0005739", "P69905"]
    outside = json.loads(running.request("/segment/tomo/cells?z=0&y=0&x=0").body)
    assert outside["id"] == 0
    assert running.request("/segment/tomo/cells?z=99&y=0&x=0").status == 400
    assert running.request("/segment/tomo/cells?z=1&y=0").status == 400


def test_the_page_and_the_index(running) -> None:
    page = running.request("/view/tomo")
    assert page.status == 200
    assert b'data-volume="tomo"' in page.body
    assert running.request("/view/nope").status == 404
    assert running.request("/static/viewer.js").status == 200
    index = running.request("/")
    assert index.status in (200, 307)


def test_names_default_to_the_folder_and_must_be_unique(tmp_path) -> None:
    assert serve_name("/data/EMPIAR-10001.ome.zarr") == "EMPIAR-10001"
    assert serve_name("s3://bucket/vol.zarr/") == "vol"
    data = np.zeros((4, 8, 8), np.uint8)
    cellvol.write_pyramid(data, tmp_path / "a" / "v.zarr", 1.0)
    cellvol.write_pyramid(data, tmp_path / "b" / "v.zarr", 1.0)
    with pytest.raises(cellvol.InvalidInputError, match=r"two volumes would be served as \['v'\]"):
        Server([str(tmp_path / "a" / "v.zarr"), str(tmp_path / "b" / "v.zarr")])
    named = Server([str(tmp_path / "a" / "v.zarr"), f"second={tmp_path / 'b' / 'v.zarr'}"])
    assert [s.name for s in named.app.state.served] == ["v", "second"]
    named.stop()
    with pytest.raises(cellvol.InvalidInputError, match="must be letters"):
        Served.open(str(tmp_path / "a" / "v.zarr"), name="a b")


def test_slow_requests_time_out_and_excess_ones_are_refused(running, monkeypatch) -> None:
    import cellvol.server._app as app_module

    original = app_module.render

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(app_module, "render", slow)
    with Server([str(running.image)], max_concurrency=1, timeout=0.5) as server:
        from server_helpers import Running

        client = Running(
            server.url,
            server.host,
            server.port,
            running.image,
            running.outside,
            running.data,
            running.labels,
        )
        replies = []
        threads = [
            threading.Thread(
                target=lambda i=i: replies.append(client.request(f"/tiles/tomo/0/z/{i}/0/0.png"))
            )
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(r.status for r in replies)
        assert set(statuses) <= {503, 504}
        assert 504 in statuses
        assert all(b"Traceback" not in r.body for r in replies)


def test_the_serve_command_runs_a_server(running) -> None:
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    command = Path(sys.executable).with_name("cellvol")
    process = subprocess.Popen(
        [str(command), "serve", f"demo={running.image}", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("catalog "):
                break
        catalog_url = lines[-1].split()[1]
        assert catalog_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(catalog_url, timeout=10) as reply:
            names = [v["name"] for v in json.loads(reply.read())["volumes"]]
        assert names == ["demo"]
        assert any("view/demo" in line for line in lines)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cellvol_reads_a_served_volume_over_http(running) -> None:
    remote = cellvol.open(f"{running.url}data/tomo/")
    np.testing.assert_array_equal(remote[3:9, 10:40], running.data[3:9, 10:40])
    np.testing.assert_array_equal(remote.labels["cells"][10], running.labels[10])
    assert remote.labels["cells"].properties[2]["name"] == "mitochondrion"


def test_images_that_are_not_3d_are_served_as_raw_keys_only(tmp_path) -> None:
    import zarr

    array = zarr.create_array(
        tmp_path / "plane.zarr", shape=(40, 50), dtype="uint8", chunks=(20, 25)
    )
    array[...] = 7
    with Server([str(tmp_path / "plane.zarr")]) as server:
        from server_helpers import Running

        client = Running(
            server.url, server.host, server.port, tmp_path, tmp_path, array[...], array[...]
        )
        assert client.request("/data/plane/zarr.json").status == 200
        reply = client.request("/tiles/plane/0/z/0/0/0.png")
        assert reply.status == 400
        assert b"3-D (z, y, x) images" in reply.body


def test_renders_refuse_shards_that_lead_outside_the_store(tmp_path) -> None:
    from server_helpers import Running

    data = np.arange(32 * 64 * 64, dtype=np.uint16).reshape(32, 64, 64)
    image = tmp_path / "served" / "tomo.ome.zarr"
    elsewhere = tmp_path / "elsewhere" / "other.ome.zarr"
    for path, values in ((image, data), (elsewhere, data[::-1].copy())):
        cellvol.write_pyramid(values, path, (8, 4, 4), n_levels=1, chunks=(16, 32, 32))
        cellvol.write_labels(path, (values % 3).astype(np.uint8), "cells")
    shard = image / "0" / "c" / "0" / "0" / "0"
    kept = image / "0" / "kept-shard"
    shard.rename(kept)
    shard.symlink_to(elsewhere / "0" / "c" / "0" / "0" / "0")
    label_shard = image / "labels" / "cells" / "0" / "c" / "0" / "0" / "0"
    label_shard.unlink()
    label_shard.symlink_to(elsewhere / "labels" / "cells" / "0" / "c" / "0" / "0" / "0")
    with Server([str(image)]) as server:
        host, port = server.host, server.port
        running = Running(server.url, host, port, image, elsewhere, data, data)
        for path in (
            "/tiles/tomo/0/z/5/0/0.png",
            "/slice/tomo.png?z=5",
            "/segment/tomo/cells?z=1&y=1&x=1",
        ):
            reply = running.request(path)
            assert reply.status == 404, path
            assert b"leads outside the served image" in reply.body
            assert str(tmp_path).encode() not in reply.body
        assert running.request("/data/tomo/0/c/0/0/0").status == 404
    # A link that stays inside the store is an ordinary object.
    shard.unlink()
    shard.symlink_to(kept)
    label_shard.unlink()
    with Server([str(image)]) as server:
        running = Running(server.url, server.host, server.port, image, elsewhere, data, data)
        window = cellvol.open(image).window
        tile = _image(running.request("/tiles/tomo/0/z/5/0/0.png"))
        np.testing.assert_array_equal(tile[..., 0], _grey(data[5], window.start, window.end))


def test_error_bodies_name_the_image_not_the_servers_paths(running) -> None:
    for path in (
        "/segment/tomo/nope?z=1&y=1&x=1",
        "/slice/tomo.png?labels=nope",
        "/tiles/tomo/0/z/5/0/0.png?labels=nope",
    ):
        reply = running.request(path)
        assert reply.status == 404, path
        assert b"tomo has no labels 'nope'" in reply.body
        assert str(running.image.parent).encode() not in reply.body
