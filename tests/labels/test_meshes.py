"""Segment surfaces: closed, outward, volume-true, in physical units, kept with the labels."""

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import cellvol
from cellvol.cli import main as cli_main
from cellvol.labels._mesh_store import INDEX_KEY, Mesh, mesh_key


def _edges_are_closed_and_consistent(mesh: Mesh) -> None:
    """Every edge in exactly two triangles, walked once in each direction."""
    t = mesh.triangles.astype(np.int64)
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    undirected = Counter(map(tuple, np.sort(directed, axis=1).tolist()))
    assert set(undirected.values()) == {2}, "an edge is open or shared by more than two"
    assert len(set(map(tuple, directed.tolist()))) == len(directed), "inconsistent winding"


def _image(tmp_path: Path, shape, voxel, **kwargs) -> Path:
    path = tmp_path / "image.ome.zarr"
    cellvol.write_pyramid(np.zeros(shape, np.uint8), path, voxel, **kwargs)
    return path


def _ball(shape, centre, radius) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_a_sphere_is_closed_outward_and_encloses_its_voxel_volume(tmp_path: Path) -> None:
    shape = (48, 48, 48)
    labels = np.zeros(shape, np.uint16)
    labels[_ball(shape, (24, 24, 24), 14)] = 9
    image = _image(tmp_path, shape, (2.0, 2.0, 2.0), n_levels=2)
    cellvol.write_labels(image, labels, "cells")
    mesh = cellvol.read_mesh(image, "cells", 9)
    voxel_volume = float((labels == 9).sum()) * 2.0**3  # nm³
    assert mesh.volume > 0  # positive: the triangles face outwards
    assert mesh.volume == pytest.approx(voxel_volume, rel=0.05)
    _edges_are_closed_and_consistent(mesh)
    # The surface touches the padded box: a segment at the volume's edge is closed too.
    edge = np.zeros(shape, np.uint16)
    edge[:10, :10, :10] = 4
    cellvol.write_labels(image, edge, "corner")
    corner = cellvol.read_mesh(image, "corner", 4)
    _edges_are_closed_and_consistent(corner)
    assert corner.volume == pytest.approx(1000 * 8.0, rel=0.05)


def test_vertices_are_in_nm_x_y_z_inside_each_segment_box(tmp_path: Path) -> None:
    shape = (20, 64, 80)
    labels = np.zeros(shape, np.uint32)
    labels[_ball(shape, (6, 20, 20), 5)] = 1
    labels[10:18, 30:60, 5:30] = 2
    labels[2:19, 40:50, 50:78] = 3_000_000
    image = _image(tmp_path, shape, (50.0, 4.0, 4.0), n_levels=3)
    written = cellvol.write_labels(image, labels, "cells")
    index = cellvol.mesh_index(image, "cells")
    assert index is not None
    assert sorted(index.segments) == [1, 2, 3_000_000]
    for segment in written.segments:
        mesh = cellvol.read_mesh(image, "cells", segment["id"])
        low, high = np.array(segment["bbox_physical"])[:, ::-1]  # z, y, x -> x, y, z
        slack = np.array([4.0, 4.0, 50.0])  # one voxel: marching cubes cuts between voxels
        assert (mesh.vertices >= low - slack).all(), segment["id"]
        assert (mesh.vertices <= high + slack).all(), segment["id"]
        # The box's extent is reached: x spans most of it, z (50 nm voxels) too.
        extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
        assert (extent >= (high - low) - slack).all(), segment["id"]
        assert mesh.volume == pytest.approx(segment["voxel_count"] * 50 * 4 * 4, rel=0.12)
        _edges_are_closed_and_consistent(mesh)


def test_a_segment_too_large_for_the_budget_is_meshed_on_a_coarser_level(tmp_path: Path) -> None:
    shape = (64, 64, 64)
    labels = np.zeros(shape, np.uint8)
    labels[_ball(shape, (32, 32, 32), 28)] = 1
    labels[_ball(shape, (4, 4, 4), 3)] = 2
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0), n_levels=3)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    assert cellvol.mesh_index(image, "cells") is None
    index = cellvol.compute_meshes(image, "cells", triangle_budget=3000)
    big, small = index.segments[1], index.segments[2]
    assert big.level > 0
    assert big.triangles <= 3000
    assert small.level == 0  # a small segment keeps full resolution
    mesh = cellvol.read_mesh(image, "cells", 1)
    _edges_are_closed_and_consistent(mesh)
    # True to the level it was meshed on; that level's mode downsampling shaved the ball.
    level = cellvol.open(image).labels["cells"].levels[big.level]
    level_volume = float((level[:] == 1).sum()) * float(np.prod(level.scale))
    assert mesh.volume == pytest.approx(level_volume, rel=0.05)
    assert mesh.volume == pytest.approx(float((labels == 1).sum()), rel=0.10)
    with pytest.raises(cellvol.InvalidInputError, match="at least 100"):
        cellvol.compute_meshes(image, "cells", triangle_budget=10)


def test_relabelling_recomputes_the_meshes_and_the_image_verifies(tmp_path: Path) -> None:
    shape = (32, 48, 48)
    image = _image(tmp_path, shape, (4.0, 2.0, 2.0), n_levels=2)
    first = np.zeros(shape, np.uint16)
    first[_ball(shape, (16, 24, 24), 10)] = 5
    cellvol.write_labels(image, first, "cells")
    before = cellvol.mesh_index(image, "cells")
    second = np.zeros(shape, np.uint16)
    second[4:12, 4:20, 4:20] = 6
    second[_ball(shape, (20, 30, 30), 6)] = 7
    cellvol.write_labels(image, second, "cells", overwrite=True)
    after = cellvol.mesh_index(image, "cells")
    assert before is not None
    assert after is not None
    assert before.source != after.source  # recorded from the new labels' digests
    assert sorted(after.segments) == [6, 7]
    box = cellvol.read_mesh(image, "cells", 6)
    assert box.volume == pytest.approx(8 * 16 * 16 * 4 * 2 * 2, rel=0.05)
    report = cellvol.verify(image)
    assert report.problems == [], report.problems
    # Annotating leaves the voxels, so the meshes stay current and are not recomputed.
    cellvol.annotate(image, "cells", 7, name="vesicle")
    stored = image / "labels" / "cells" / mesh_key(7)
    stamp = stored.stat().st_mtime_ns
    again = cellvol.compute_meshes(image, "cells")
    assert again.source == after.source
    assert stored.stat().st_mtime_ns == stamp
    forced = cellvol.compute_meshes(image, "cells", force=True)
    assert stored.stat().st_mtime_ns != stamp
    assert forced.segments[7].sha256 == after.segments[7].sha256  # deterministic
    assert cellvol.verify(image).problems == []


def test_the_meshes_command_computes_them_for_existing_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shape = (16, 32, 32)
    labels = np.zeros(shape, np.uint8)
    labels[4:12, 8:24, 8:24] = 3
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    cellvol.write_labels(image, labels, "cells", meshes=False)
    with pytest.raises(SystemExit) as done:
        cli_main(["meshes", str(image), "--labels", "cells"])
    assert done.value.code == 0
    assert "1 segment surface(s)" in capsys.readouterr().out
    assert (image / "labels" / "cells" / INDEX_KEY).is_file()
    with pytest.raises(SystemExit) as failed:
        cli_main(["meshes", str(image), "--labels", "nuclei"])
    assert failed.value.code == 1
    assert "no labels 'nuclei'" in capsys.readouterr().err
    with pytest.raises(cellvol.InvalidInputError, match="segment 99"):
        cellvol.read_mesh(image, "cells", 99)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads peak memory in /proc")
def test_meshing_a_1_gib_label_image_runs_in_bounded_memory(tmp_path: Path) -> None:
    import dask.array as da

    from cellvol.synthetic import SyntheticVolume

    shape = (256, 1024, 1024)  # uint32: 1 GiB
    image = tmp_path / "big.ome.zarr"
    cellvol.write_pyramid(da.zeros(shape, np.uint8, chunks=(64, 512, 512)), image, 1.0)
    labels = SyntheticVolume(shape, seed=0, kind="labels")
    assert labels.dtype == np.uint32
    cellvol.write_labels(image, labels, "cells", meshes=False)
    # Meshed in a process of its own, its peak read from the kernel's high-water mark of its
    # own memory (VmHWM: getrusage's maxrss would include this process's, inherited at fork).
    script = textwrap.dedent(
        f"""
        import re, cellvol
        from pathlib import Path
        index = cellvol.compute_meshes({str(image)!r}, "cells")
        status = Path("/proc/self/status").read_text()
        peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
        print(len(index.segments), len(index.skipped), peak)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=3000
    )
    assert done.returncode == 0, done.stderr
    meshed, skipped, peak_kib = (int(v) for v in done.stdout.split())
    assert meshed > 1000
    assert skipped == 0
    # Half the 1 GiB volume at most: the interpreter and its libraries, the decoded-chunk cache
    # (128 MiB) and a mask per thread (MAX_MASK_VOXELS, 5 bytes a voxel with its float copy).
    assert peak_kib * 1024 < 512 * 2**20, f"peak {peak_kib / 1024:.0f} MiB"
    assert cellvol.verify(image).problems == []


def test_stale_meshes_are_recomputed_and_those_of_gone_segments_deleted(tmp_path: Path) -> None:
    import shutil

    shape = (16, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    first = np.zeros(shape, np.uint8)
    first[2:8, 2:10, 2:10] = 5
    cellvol.write_labels(image, first, "cells")
    folder = image / "labels" / "cells" / "meshes"
    shutil.copytree(folder, tmp_path / "kept")
    second = np.zeros(shape, np.uint8)
    second[8:14, 10:30, 10:30] = 6
    cellvol.write_labels(image, second, "cells", overwrite=True, meshes=False)
    shutil.copytree(tmp_path / "kept", folder)  # left by a tool that did not recompute them
    index = cellvol.compute_meshes(image, "cells")  # not forced: stale, so recomputed
    assert sorted(index.segments) == [6]
    assert sorted(p.name for p in folder.iterdir()) == ["6.bin", "index.json"]
    assert cellvol.verify(image).problems == []


@pytest.mark.s3
def test_meshes_on_s3_are_written_listed_and_verified(s3_bucket) -> None:
    options = s3_bucket.storage_options
    url = s3_bucket.url("image.ome.zarr")
    shape = (16, 32, 32)
    labels = np.zeros(shape, np.uint16)
    labels[_ball(shape, (8, 16, 16), 6)] = 11
    cellvol.write_pyramid(np.zeros(shape, np.uint8), url, 2.0, storage_options=options)
    cellvol.write_labels(url, labels, "cells", storage_options=options)
    index = cellvol.mesh_index(url, "cells", storage_options=options)
    assert index is not None
    assert sorted(index.segments) == [11]
    mesh = cellvol.read_mesh(url, "cells", 11, storage_options=options)
    _edges_are_closed_and_consistent(mesh)
    assert mesh.volume == pytest.approx(float((labels == 11).sum()) * 8.0, rel=0.05)
    assert cellvol.compute_meshes(url, "cells", storage_options=options) == index  # current
    assert cellvol.verify(url, options).problems == []


def _rewrite_level_0(image: Path, labels: np.ndarray, *, manifest: bool = False) -> None:
    """Another tool (zarr-python itself) rewrites the voxels; cellvol's records stay as they were.

    Without ``manifest``, the labels are as another tool would have left them from the start:
    without cellvol's write manifest, whose shard fingerprints refuse foreign shards.
    """
    import json

    import zarr

    if not manifest:
        folder = image / "labels" / "cells"
        (folder / "_cellvol" / "manifest.json").unlink()
        body = json.loads((folder / "zarr.json").read_text())
        del body["attributes"]["cellvol"]  # cellvol's provenance: not written by cellvol
        (folder / "zarr.json").write_text(json.dumps(body))
    zarr.open_array(image / "labels" / "cells" / "0", mode="r+")[:] = labels


def test_labels_rewritten_by_another_tool_make_the_meshes_stale_and_recomputed(
    tmp_path: Path,
) -> None:
    from cellvol.labels._meshes import stored_meshes

    shape = (16, 48, 48)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0), n_levels=2)
    first = np.zeros(shape, np.uint8)
    first[4:10, 4:12, 4:12] = 7
    cellvol.write_labels(image, first, "cells")
    before = cellvol.mesh_index(image, "cells")
    assert before is not None
    moved = np.zeros(shape, np.uint8)
    moved[2:14, 20:44, 20:44] = 7  # segment 7, larger and elsewhere
    _rewrite_level_0(image, moved)
    _, stale, _ = stored_meshes(cellvol.open(image).labels["cells"])
    assert stale is True  # its level-0 objects were resized
    index = cellvol.compute_meshes(image, "cells")  # not forced
    assert index.source != before.source
    x = cellvol.read_mesh(image, "cells", 7).vertices[:, 0]
    assert x.min() > 15  # the new position, not the old x 4-12
    _, stale, _ = stored_meshes(cellvol.open(image).labels["cells"])
    assert stale is False


def test_a_foreign_rewrite_of_cellvol_written_labels_is_refused_not_ignored(
    tmp_path: Path,
) -> None:
    shape = (8, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    first = np.zeros(shape, np.uint8)
    first[2:6, 2:10, 2:10] = 5
    cellvol.write_labels(image, first, "cells")
    moved = np.zeros(shape, np.uint8)
    moved[2:6, 18:30, 18:30] = 5
    _rewrite_level_0(image, moved, manifest=True)
    # The write manifest's fingerprints tell the shard is not cellvol's: said, not meshed over.
    with pytest.raises(cellvol.IntegrityError, match="0/c/0/0/0 is not the shard written"):
        cellvol.compute_meshes(image, "cells")


def test_a_same_size_rewrite_is_recomputed_by_compute_meshes(tmp_path: Path) -> None:
    shape = (8, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    first = np.zeros(shape, np.uint8)
    first[2:6, 2:10, 2:10] = 5
    first[2:6, 20:28, 20:28] = 6
    cellvol.write_labels(image, first, "cells")
    swapped = np.where(first == 5, 6, np.where(first == 6, 5, 0)).astype(np.uint8)
    _rewrite_level_0(image, swapped)  # the same shapes, the IDs swapped: likely the same sizes
    index = cellvol.compute_meshes(image, "cells")
    assert set(index.segments) == {5, 6}
    assert cellvol.read_mesh(image, "cells", 5).vertices[:, 0].min() > 15


def test_a_new_voxel_size_makes_compute_meshes_recompute(tmp_path: Path) -> None:
    import json

    shape = (8, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 2:10, 2:10] = 5
    cellvol.write_labels(image, labels, "cells")
    document = image / "labels" / "cells" / "zarr.json"
    text = document.read_text()
    body = json.loads(text)
    (multiscale,) = body["attributes"]["ome"]["multiscales"]
    for dataset in multiscale["datasets"]:
        scale = dataset["coordinateTransformations"][0]
        scale["scale"] = [value * 2 for value in scale["scale"]]
    document.write_text(json.dumps(body))
    cellvol.compute_meshes(image, "cells")
    x = cellvol.read_mesh(image, "cells", 5).vertices[:, 0]
    assert x.max() > 18  # x 2-10 voxels of 2 nm now, not 1 nm


def test_an_interrupted_meshes_run_leaves_the_image_verifying_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellvol.labels import _meshes

    shape = (16, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 2:10, 2:10] = 5
    labels[8:14, 12:30, 12:30] = 6
    cellvol.write_labels(image, labels, "cells")
    assert cellvol.verify(image).problems == []
    real = _meshes._Mesher._surface
    calls = []

    def interrupted(self, *args, **kwargs):  # Ctrl-C on the second segment
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_meshes._Mesher, "_surface", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cellvol.compute_meshes(image, "cells", force=True, smoothing=False, workers=1)
    monkeypatch.undo()
    assert cellvol.mesh_index(image, "cells") is None  # no index: "no meshes", resumable
    assert cellvol.verify(image).problems == []
    index = cellvol.compute_meshes(image, "cells")
    assert sorted(index.segments) == [5, 6]
    assert cellvol.verify(image).problems == []


def test_labels_without_a_segment_table_get_one_then_meshes(tmp_path: Path) -> None:
    import shutil

    shape = (8, 32, 32)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 2:10, 2:10] = 5
    labels[2:6, 20:28, 20:28] = 6
    cellvol.write_labels(image, labels, "cells", meshes=False)
    # As another tool's labels (ome-zarr-py's, say): no segment table.
    shutil.rmtree(image / "labels" / "cells" / "segments")
    index = cellvol.compute_meshes(image, "cells")
    assert sorted(index.segments) == [5, 6]
    table = cellvol.open(image).labels["cells"].segments
    assert table[5]["voxel_count"] == 4 * 8 * 8
    assert cellvol.verify(image).problems == []


@pytest.mark.parametrize("step", [(1, 1, 1), (1, 2, 2), (2, 1, 4), (3, 3, 3)])
def test_masks_are_read_in_bounded_tiles_and_match_a_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: tuple[int, int, int]
) -> None:
    from cellvol.labels import _meshes

    shape = (9, 40, 52)
    image = _image(tmp_path, shape, (1.0, 1.0, 1.0))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, shape, dtype=np.uint8)
    cellvol.write_labels(image, labels, "cells", meshes=False)
    level = cellvol.open(image).labels["cells"].levels[0]

    class Recording:  # the real level, its reads' sizes noted
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def __getitem__(self, key):
            block = level[key]
            self.sizes.append(block.size)
            return block

    slab = 300  # a plane of the box is 38 x 50 voxels: every read must split it
    monkeypatch.setattr(_meshes, "_SLAB_VOXELS", slab)
    recording = Recording()
    low, high = (1, 2, 1), (9, 40, 51)
    mask = _meshes._read_mask(recording, low, high, 2, step)  # type: ignore[arg-type]
    box = labels[1:9, 2:40, 1:51]
    np.testing.assert_array_equal(mask, box[:: step[0], :: step[1], :: step[2]] == 2)
    assert max(recording.sizes) <= slab
