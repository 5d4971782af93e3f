"""Label images beside their image: pyramids with exact IDs, segment tables, metadata, errors."""

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import cellvol
import cellvol.labels._write
from cellvol.errors import IntegrityError, InvalidInputError, NotOMEZarrError
from cellvol.formats._open import open_source
from cellvol.labels._segments import compute_segments
from cellvol.labels._write import MAX_COLORS
from cellvol.ome._display import label_color

SHAPE = (20, 70, 90)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    data = np.random.default_rng(1).integers(0, 200, size=SHAPE, dtype=np.uint8)
    path = tmp_path / "em.ome.zarr"
    cellvol.write_pyramid(
        data, path, (30, 5, 5), n_levels=3, chunks=(8, 16, 16), shards=(16, 32, 32)
    )
    return path


def _blobs(seed: int = 0) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint32)
    rng = np.random.default_rng(seed)
    for label in (1, 2, 5, 40, 2**31 + 7):
        z, y, x = (int(rng.integers(0, n - 6)) for n in SHAPE)
        labels[z : z + int(rng.integers(2, 9)), y : y + int(rng.integers(3, 30)), x : x + 25] = (
            label
        )
    return labels


def _expected_table(labels: np.ndarray) -> dict[int, dict]:
    """The segment table computed directly with numpy, voxel by voxel."""
    table = {}
    for label in np.unique(labels):
        if label == 0:
            continue
        where = np.argwhere(labels == label)
        table[int(label)] = {
            "voxel_count": len(where),
            "bbox": [where.min(axis=0).tolist(), where.max(axis=0).tolist()],
            "centroid": where.mean(axis=0).tolist(),
        }
    return table


def _check_table(segments, labels: np.ndarray) -> None:
    expected = _expected_table(labels)
    assert [s["id"] for s in segments] == sorted(expected)
    for segment in segments:
        want = expected[segment["id"]]
        assert segment["voxel_count"] == want["voxel_count"]
        assert segment["bbox"] == want["bbox"]
        assert segment["centroid"] == pytest.approx(want["centroid"])


def test_labels_are_written_beside_the_image_and_read_back(image: Path) -> None:
    labels = _blobs()
    written = cellvol.write_labels(image, labels, "cells")
    volume = cellvol.open(image)
    assert list(volume.labels) == ["cells"]
    assert volume.info(stored_bytes=False)["labels"] == ["cells"]
    cells = volume.labels["cells"]
    assert isinstance(cells, cellvol.LabelImage)
    assert cells.url == written.url
    np.testing.assert_array_equal(cells[:], labels)
    # Same levels, voxel sizes and layout as the image, so overlays align level by level.
    for image_level, label_level in zip(volume.levels, cells.levels, strict=True):
        assert label_level.shape == image_level.shape
        assert label_level.voxel_size == image_level.voxel_size
        assert label_level.shards == image_level.shards
    # mode downsampling keeps IDs exact: nothing new appears at coarser levels.
    for level in cells.levels[1:]:
        assert set(np.unique(level[:])) <= set(np.unique(labels))
    assert cells.source_image == "../../"
    assert cells.multiscale.method == "mode"


def test_segment_table_matches_numpy(image: Path) -> None:
    labels = _blobs(3)
    cells = cellvol.write_labels(image, labels, "cells")
    _check_table(cells.segments, labels)
    assert cells.segment_count == len(cells.segments) == 5
    record = cells.segments[5]
    assert record["centroid_physical"] == pytest.approx(
        [c * s for c, s in zip(record["centroid"], (30, 5, 5), strict=True)]
    )
    assert record["unit"] == "nanometer"
    frame = cells.segments.to_pandas()
    assert frame.loc[40, "voxel_count"] == int((labels == 40).sum())
    with pytest.raises(KeyError, match=r"segment 3 does not exist: .* 5 segment\(s\)"):
        cells.segments[3]


def test_segments_stream_in_blocks_across_block_edges() -> None:
    """Segments spanning many blocks, folded in several rounds, still sum exactly."""
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 6, size=(70, 300, 270), dtype=np.uint16)
    table = compute_segments(
        labels.__getitem__, labels.shape, scale=(1, 1, 1), translation=(0, 0, 0), workers=2
    )
    _check_table(table, labels)


def test_colors_and_metadata_are_valid_ome_zarr(image: Path) -> None:
    from ome_zarr_models.v05.labels import Labels as LabelsModel

    cells = cellvol.write_labels(image, _blobs(), "cells", colors={5: (255, 0, 0, 128)})
    assert cells.colors[5] == (255, 0, 0, 128)
    assert cells.colors[1] == label_color(1)
    assert cells.properties[40]["voxel_count"] == cells.segments[40]["voxel_count"]
    group = zarr.open_group(image / "labels", mode="r")
    model = LabelsModel.from_zarr(group)  # validates every label image and its dtypes
    assert model.attributes.ome.labels == ["cells"]


def test_several_label_images_and_rewriting_one(image: Path) -> None:
    cellvol.write_labels(image, _blobs(0), "cells")
    cellvol.write_labels(image, (_blobs(1) > 0).astype(np.uint8), "mask")
    assert list(cellvol.open(image).labels) == ["cells", "mask"]
    cellvol.write_labels(image, _blobs(2), "cells", overwrite=True)
    volume = cellvol.open(image)
    assert list(volume.labels) == ["cells", "mask"]
    np.testing.assert_array_equal(volume.labels["cells"][:], _blobs(2))


def test_an_interrupted_labels_write_is_detected_and_finished(image: Path) -> None:
    labels = _blobs()
    cellvol.write_labels(image, labels, "cells")
    # As if the process died after the pyramid but before the segment table.
    (image / "labels" / "cells" / "segments" / "zarr.json").unlink()
    broken = cellvol.open(image).labels["cells"]
    assert broken.segment_count is None
    with pytest.raises(IntegrityError, match=r"no complete segment table.*run it again"):
        _ = broken.segments
    finished = cellvol.write_labels(image, labels, "cells")  # the same call again
    _check_table(finished.segments, labels)


def test_bad_labels_are_refused_before_anything_is_written(image: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"labels of shape \(20, 70, 91\) do not match"):
        cellvol.write_labels(image, np.zeros((20, 70, 91), np.uint8), "cells")
    with pytest.raises(InvalidInputError, match=r"labels must be integers.*got float32"):
        cellvol.write_labels(image, np.zeros(SHAPE, np.float32), "cells")
    with pytest.raises(InvalidInputError, match=r"label name '\.\./x' is invalid"):
        cellvol.write_labels(image, np.zeros(SHAPE, np.uint8), "../x")
    with pytest.raises(InvalidInputError, match="labels must be an array or a file path"):
        cellvol.write_labels(image, [[1, 2]], "cells")
    assert not (image / "labels").exists()
    bare = tmp_path / "bare.zarr"
    zarr.create_array(bare, shape=SHAPE, dtype="uint8")
    with pytest.raises(NotOMEZarrError, match="not an OME-Zarr image to add labels to"):
        cellvol.write_labels(bare, np.zeros(SHAPE, np.uint8), "cells")
    with pytest.raises(KeyError, match=r"has no labels 'nope'; its labels: none"):
        cellvol.open(image).labels["nope"]


def test_many_segments_get_no_colour_list(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cellvol.labels._write, "MAX_COLORS", 3)
    cells = cellvol.write_labels(image, _blobs(), "cells")
    assert len(cells.segments) == 5 > 3
    assert cells.colors == {}
    assert MAX_COLORS == 10_000


def test_labels_from_a_tiff_file(image: Path, tmp_path: Path) -> None:
    labels = _blobs(4).astype(np.uint16)
    path = tmp_path / "seg.tif"
    tifffile.imwrite(path, labels)
    cells = cellvol.write_labels(image, path, "cells")
    np.testing.assert_array_equal(cells[:], labels)


def test_real_serial_section_labels(shared_data: Path, tmp_path: Path) -> None:
    """The ssTEM stack and its label stack; instances found with scikit-image."""
    from skimage.measure import label as connected
    from skimage.measure import regionprops

    image = cellvol.convert(
        shared_data / "sstem" / "image", tmp_path / "em.zarr", voxel_size=(50, 4, 4)
    )
    masks = open_source(shared_data / "sstem" / "label").array[:]
    mask_labels = cellvol.write_labels(image.url, shared_data / "sstem" / "label", "membranes")
    _check_table(mask_labels.segments, masks)
    # Instance labels: connected regions of the non-membrane space, checked against skimage.
    instances = connected(masks[:8] == 0).astype(np.uint32)
    small = cellvol.write_pyramid(
        np.zeros(instances.shape, np.uint8), tmp_path / "small.zarr", (50, 4, 4)
    )
    cells = cellvol.write_labels(small.url, instances, "cells")
    props = {p.label: p for p in regionprops(instances)}
    assert len(cells.segments) == len(props)
    for segment in cells.segments:
        region = props[segment["id"]]
        assert segment["voxel_count"] == region.area
        assert segment["bbox"] == [list(region.bbox[:3]), [b - 1 for b in region.bbox[3:]]]
        assert segment["centroid"] == pytest.approx(list(region.centroid))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_label_metadata_and_segment_table_are_synced_to_the_disk(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the labels pyramid (synced by write_pyramid), the registration, the segment table
    # and the colours go through zarr, which leaves them in the page cache.
    synced: list[str] = []
    original = os.fsync

    def logging_fsync(descriptor: int) -> None:
        original(descriptor)
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))

    monkeypatch.setattr(os, "fsync", logging_fsync)
    labels = np.zeros(SHAPE, dtype=np.uint16)
    labels[2:6, 3:9, 4:12] = 7
    cellvol.write_labels(image, labels, "synced")
    root = image.resolve()
    after_pyramid = synced.index(str(root / "labels" / "synced" / "_cellvol" / "complete.json"))
    later = set(synced[after_pyramid + 1 :])
    assert str(root / "labels" / "zarr.json") in later
    assert str(root / "labels" / "synced" / "zarr.json") in later  # the colours
    table = root / "labels" / "synced" / "segments"
    stored = {str(p) for p in table.rglob("*") if p.is_file()}
    assert stored
    assert stored <= later
