"""``/segments/{name}/{labels}``, the page's segment list, over a real server on 127.0.0.1."""

import json

import numpy as np

from cellvol.ome._display import label_color


def _json(running, path: str) -> dict:
    reply = running.request(path)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/json"
    return json.loads(reply.body)


def test_segments_list_annotated_first_with_statistics_and_references(running) -> None:
    found = _json(running, "/segments/tomo/cells")
    assert found["unit"] == "nanometer"
    assert (found["total"], found["truncated"]) == (2, False)
    first, second = found["segments"]
    # Segment 2 is annotated, so it heads the list though segment 1 is larger.
    assert (first["id"], first["name"], second["id"], second["name"]) == (
        2,
        "mitochondrion",
        1,
        None,
    )
    for record in found["segments"]:
        voxels = np.argwhere(running.labels == record["id"])
        assert record["voxel_count"] == len(voxels)
        np.testing.assert_allclose(record["centroid"], voxels.mean(axis=0))
        np.testing.assert_allclose(record["centroid_physical"], voxels.mean(axis=0) * [8, 4, 4])
        assert record["bbox"] == [voxels.min(axis=0).tolist(), voxels.max(axis=0).tolist()]
        assert record["color"] == list(label_color(record["id"]))  # the 2-D overlay's colour
    references = {r["accession"]: r["url"] for r in first["references"]}
    assert references == {
        "GO:0005739": "https://amigo.geneontology.org/amigo/term/GO:0005739",
        "P69905": "https://www.uniprot.org/uniprotkb/P69905/entry",
    }


def test_segments_search_by_words_references_and_ids(running) -> None:
    def ids(query: str) -> list[int]:
        return [s["id"] for s in _json(running, f"/segments/tomo/cells?{query}")["segments"]]

    assert ids("q=MITO") == [2]  # case does not matter
    assert ids("q=GO:0005739") == [2]
    assert ids("q=uniprot") == [2]
    assert ids("q=1") == [1]  # by ID
    assert ids("q=nothing-like-this") == []
    assert ids("ids=1,99,2") == [1, 2]  # unknown IDs are left out
    limited = _json(running, "/segments/tomo/cells?limit=1")
    assert (limited["total"], limited["truncated"], len(limited["segments"])) == (2, True, 1)


def test_segments_errors_name_what_was_wrong(running) -> None:
    for path, status, words in [
        ("/segments/tomo/cells?limit=0", 400, "limit must be between 1 and 5000"),
        ("/segments/tomo/cells?limit=x", 400, "limit must be an integer"),
        ("/segments/tomo/cells?ids=1,x", 400, "ids must be integers"),
        ("/segments/tomo/nuclei", 404, "nuclei"),
        ("/segments/other/cells", 404, "no volume named 'other'"),
    ]:
        reply = running.request(path)
        assert reply.status == status, (path, reply.body)
        assert words in json.loads(reply.body)["error"], (path, reply.body)
        assert str(running.image) not in json.loads(reply.body)["error"]
    # Unknown labels: named by the served name, with the labels there are.
    for path in ("/segments/tomo/nuclei", "/meshes/tomo/nuclei", "/segment/tomo/nuclei?z=0"):
        reply = running.request(path)
        assert reply.status == 404, path
        assert json.loads(reply.body)["error"] == "tomo has no labels 'nuclei' (labels: cells)"


def test_stored_reference_urls_are_rebuilt_never_passed_on(tmp_path) -> None:
    import cellvol
    from cellvol.server import Server

    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:6, 2:6] = 5
    image = tmp_path / "hostile.ome.zarr"
    cellvol.write_pyramid(np.zeros(labels.shape, np.uint8), image, 1.0)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    # Another tool's annotations: any URL at all.
    document = image / "labels" / "cells" / "zarr.json"
    body = json.loads(document.read_text())
    body["attributes"]["ome"]["image-label"]["properties"] = [
        {
            "label-value": 5,
            "name": "trap",
            "references": [
                {"resource": "GO", "accession": "GO:0005739", "url": "javascript:alert(1)"},
                {"resource": "Elsewhere", "accession": "X1", "url": "javascript:alert(2)"},
                "not a reference",
            ],
        }
    ]
    document.write_text(json.dumps(body))
    with Server([str(image)]) as server:
        from server_helpers import Running

        running = Running(server.url, server.host, server.port, image, image, None, None)
        listed = _json(running, "/segments/hostile/cells")["segments"][0]["references"]
        pointed = _json(running, "/segment/hostile/cells?z=1&y=3&x=3")["properties"]["references"]
    for references in (listed, pointed):
        assert "javascript" not in json.dumps(references)
        known, unknown = references
        assert known["url"].startswith("https://")
        assert "0005739" in known["url"]
        assert unknown == {"resource": "Elsewhere", "accession": "X1"}


def test_segments_run_within_the_servers_work_limits(running) -> None:
    from cellvol.server import Server

    # A timeout no work can meet: the list answers 504 as rendering does, so its searches are
    # bounded by the same limits (concurrency and time) and cannot take over the server.
    with Server([str(running.image)], timeout=1e-9) as server:
        from server_helpers import Running

        bounded = Running(server.url, server.host, server.port, running.image, None, None, None)
        for path in ("/segments/tomo/cells?q=1", "/slice/tomo.png"):
            reply = bounded.request(path)
            assert reply.status == 504, (path, reply.body)
        assert bounded.request("/catalog").status == 200  # unbounded routes answer
