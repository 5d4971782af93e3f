import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellvol.errors import LayoutError
from cellvol.units import VoxelSize
from cellvol.write._plan import plan_pyramid, plan_schedule, shard_regions


def test_anisotropic_3d_sem_downsamples_xy_first() -> None:
    plan = plan_pyramid((2000, 8192, 8192), VoxelSize(30, 5, 5))
    steps = [level.factors for level in plan.levels[1:]]
    # 5 nm -> 10 -> 20 (still finer than 30/sqrt2), then 40 ~ 30: isotropic from there.
    assert steps[:3] == [(1, 2, 2)] * 3
    assert steps[3] == (2, 2, 2)
    assert plan.levels[3].scale == (30.0, 40.0, 40.0)


def test_isotropic_halves_all_axes_and_stops_at_one_tile() -> None:
    plan = plan_pyramid((1024, 1024, 1024), VoxelSize.of(1.0))
    assert [lv.shape for lv in plan.levels] == [(1024,) * 3, (512,) * 3, (256,) * 3]
    assert all(lv.factors == (2, 2, 2) for lv in plan.levels[1:])


def test_thin_axis_shorter_than_a_chunk_is_left_alone() -> None:
    plan = plan_pyramid((40, 4096, 4096), VoxelSize.of(1.0))
    assert plan.levels[-1].shape == (40, 256, 256)
    assert all(lv.factors[0] == 1 for lv in plan.levels)


def test_axis_that_fits_a_tile_still_halves_while_it_holds_a_chunk() -> None:
    # Issue #25: 100 planes used to keep their 1 nm while y and x went to 16 nm.
    plan = plan_pyramid((100, 4096, 4096), VoxelSize.of(1.0))
    assert [lv.factors for lv in plan.levels[1:3]] == [(2, 2, 2), (1, 2, 2)]
    assert plan.levels[-1].shape == (50, 256, 256)


def test_isotropic_demo_volume_stays_isotropic() -> None:
    # The `cellvol demo` volume: 256 planes of 2 nm used to give a 2 x 4 x 4 nm level 1.
    plan = plan_pyramid((256, 512, 512), VoxelSize.of(2.0))
    assert [lv.scale for lv in plan.levels] == [(2.0, 2.0, 2.0), (4.0, 4.0, 4.0)]
    assert plan.levels[1].shape == (128, 256, 256)
    # The chunk sets the floor: 200 planes are less than one chunk of 256, so z stays.
    deep = plan_pyramid((200, 512, 512), VoxelSize.of(2.0), chunks=(256, 64, 64))
    assert deep.levels[1].scale == (2.0, 4.0, 4.0)


def test_coarse_sections_wait_for_y_and_x_before_halving() -> None:
    plan = plan_pyramid((200, 8192, 8192), VoxelSize(50, 4, 4))
    scales = [lv.scale for lv in plan.levels]
    # y and x 4 -> 64 nm alone; z (50 nm, 200 planes) halves only once they have caught up.
    assert [lv.factors for lv in plan.levels[1:5]] == [(1, 2, 2)] * 4
    assert scales[4] == (50.0, 64.0, 64.0)
    assert scales[5] == (100.0, 128.0, 128.0)
    assert plan.levels[-1].shape == (100, 256, 256)


def test_image_stack_z_never_halves_even_with_one_plane_chunks() -> None:
    plan = plan_pyramid(
        (300, 1024, 1024), VoxelSize.of(1.0), chunks=(1, 64, 64), downsample_z=False
    )
    assert all(lv.factors[0] == 1 for lv in plan.levels)


def test_levels_align_at_voxel_centres() -> None:
    plan = plan_pyramid((64, 64, 64), VoxelSize(2, 2, 2), n_levels=3)
    # Level 2 voxel covers 4 fine voxels whose centres are at 0, 2, 4, 6 nm: centre at 3 nm.
    assert plan.levels[2].scale == (8.0, 8.0, 8.0)
    assert plan.levels[2].translation == (3.0, 3.0, 3.0)


def test_user_factors_override() -> None:
    plan = plan_pyramid((64, 64, 64), VoxelSize.of(1), factors=[(1, 2, 2), (2, 2, 2)])
    assert [lv.shape for lv in plan.levels] == [(64, 64, 64), (64, 32, 32), (32, 16, 16)]


def test_chunks_and_shards_clip_to_small_levels() -> None:
    plan = plan_pyramid((40, 300, 300), VoxelSize.of(1), chunks=(32, 32, 32), shards=(64, 128, 128))
    level = plan.levels[0]
    assert level.chunks == (32, 32, 32)
    assert level.shards == (64, 128, 128)
    small = plan.levels[-1]
    assert all(s % c == 0 for s, c in zip(small.shards, small.chunks, strict=True))


def test_levels_of_at_most_one_voxel_in_64_are_stored_uncompressed() -> None:
    iso = plan_pyramid((1024, 1024, 1024), VoxelSize.of(1.0), n_levels=4)
    assert [lv.compression for lv in iso.levels] == [3, 3, None, None]
    # 3D-SEM: factors (1, 2, 2) three times give 1/4, 1/16, 1/64 of level 0's voxels.
    sem = plan_pyramid((2000, 8192, 8192), VoxelSize(30, 5, 5), compression_level=7)
    assert [lv.compression for lv in sem.levels[:5]] == [7, 7, 7, None, None]


def test_uncompressed_levels_follow_the_factors_not_the_rounded_shapes() -> None:
    # Level 2 of 1025³ is 257³, a little more than 1/64 of the voxels: still a 64x reduction.
    plan = plan_pyramid((1025, 1025, 1025), VoxelSize.of(1.0), n_levels=3)
    assert [lv.compression for lv in plan.levels] == [3, 3, None]


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0, [3, 3, 3]), (1, [None] * 3), (1 / 8, [3, None, None])]
)
def test_uncompressed_fraction_is_the_users_to_choose(fraction: float, expected: list) -> None:
    plan = plan_pyramid(
        (256, 256, 256), VoxelSize.of(1.0), n_levels=3, uncompressed_fraction=fraction
    )
    assert [lv.compression for lv in plan.levels] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compression_level": 0}, "compression_level must be 1-22, got 0"),
        ({"uncompressed_fraction": 1.5}, "between 0 and 1, got 1.5"),
        ({"uncompressed_fraction": -0.1}, "between 0 and 1"),
        ({"shards": (100, 128, 128)}, "whole number of chunks"),
        ({"chunks": (0, 64, 64)}, "positive"),
        ({"chunks": (64, 64)}, "needs 3 entries"),
        ({"n_levels": 0}, "between 1 and"),
        ({"n_levels": 3, "factors": [(2, 2, 2)]}, "contradicts"),
        ({"factors": [(128, 2, 2)]}, "exceed"),
        ({"n_levels": 12}, "cannot make 12 levels"),
    ],
)
def test_layouts_that_cannot_be_honoured_fail_before_work(kwargs, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        plan_pyramid((64, 256, 256), VoxelSize.of(1), **kwargs)


def test_windows_may_not_straddle_shards_below_a_single_shard() -> None:
    # One level-1 shard along z, but windows of 5 planes would straddle level 0's 16-plane
    # shards, each downsampled on its own: the level would be wrong, not just slow.
    plan = plan_pyramid(
        (64, 256, 256), VoxelSize.of(1), chunks=(8, 8, 8), shards=(16, 16, 16), factors=[(5, 1, 1)]
    )
    with pytest.raises(LayoutError, match="whole shards"):
        plan_schedule(plan, 1)


def test_2d_shape_refused() -> None:
    with pytest.raises(LayoutError, match="3-D"):
        plan_pyramid((64, 64), VoxelSize.of(1))


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 5000)] * 3),
    voxel=st.tuples(*[st.floats(0.1, 100)] * 3),
    chunk=st.sampled_from([16, 32, 64]),
    per_shard=st.sampled_from([1, 2, 4]),
)
def test_plan_invariants(shape, voxel, chunk, per_shard) -> None:
    plan = plan_pyramid(
        shape, VoxelSize.of(voxel), chunks=(chunk,) * 3, shards=(chunk * per_shard,) * 3
    )
    previous = None
    for level in plan.levels:
        assert all(s % c == 0 for s, c in zip(level.shards, level.chunks, strict=True))
        assert all(c <= n for c, n in zip(level.chunks, level.shape, strict=True))
        if previous is not None:
            assert level.shape == tuple(
                -(-n // f) for n, f in zip(previous.shape, level.factors, strict=True)
            )
            assert any(f > 1 for f in level.factors)
            # An axis halves only while it is longer than a tile or holds a whole chunk.
            assert all(
                f == 1 or n > 256 or n >= chunk
                for f, n in zip(level.factors, previous.shape, strict=True)
            )
        previous = level
    # Stops at one tile unless an axis was already small (then it is left alone).
    assert all(n <= 256 for n in plan.levels[-1].shape)
    # Every level halves some axis, and no axis below one voxel. (1 + log2 of the longest axis
    # is no bound: with three unequal voxels the rule can halve one axis at a time, e.g.
    # (4294, 4921, 4619) at (49.6, 85.2, 68.8) in 32³ chunks made 15 levels before #25 too.)
    assert len(plan.levels) <= 1 + sum(math.ceil(math.log2(n)) for n in shape)


def test_shard_regions_cover_exactly_once() -> None:
    shape, shards = (10, 7, 5), (4, 4, 4)
    seen = set()
    for region in shard_regions(shape, shards):
        for z in range(region[0].start, region[0].stop):
            for y in range(region[1].start, region[1].stop):
                for x in range(region[2].start, region[2].stop):
                    assert (z, y, x) not in seen
                    seen.add((z, y, x))
    assert len(seen) == math.prod(shape)


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 20000)] * 3),
    itemsize=st.sampled_from([1, 2, 4]),
    workers=st.integers(1, 16),
    memory_mib=st.integers(256, 8192),
)
def test_schedule_invariants(shape, itemsize, workers, memory_mib) -> None:
    plan = plan_pyramid(shape, VoxelSize.of(1))
    limit = memory_mib * 2**20
    # One task producing a single level 0 shard: the buffer, its child, encoded bytes, scratch.
    smallest_task = int(3.25 * math.prod(plan.levels[0].shards) * itemsize) + 64 * 2**20
    if smallest_task > limit:
        with pytest.raises(LayoutError, match="memory_limit"):
            plan_schedule(plan, itemsize, memory_limit=limit, workers=workers)
        return
    schedule = plan_schedule(plan, itemsize, memory_limit=limit, workers=workers)
    # Every level is produced exactly once, in order; each stage reads the level below it.
    produced = [level for stage in schedule.stages for level in stage.levels]
    assert produced == list(range(len(plan.levels)))
    for previous, stage in zip([None, *schedule.stages], schedule.stages, strict=False):
        assert stage.base == (-1 if previous is None else previous.top)
        # Never more tasks at once than workers or than the stage has; all of them fit.
        assert 1 <= stage.workers <= min(workers, plan.levels[stage.top].n_shards)
        assert stage.workers * stage.task_bytes <= limit
        assert len(stage.levels) <= 2
    assert schedule.peak_bytes <= limit


def test_the_peak_of_a_write_does_not_grow_with_the_volume() -> None:
    # 1 GiB, 16 GiB and 1 TiB of uint8: same tasks, so the same memory at once.
    shapes = [(512, 1024, 2048), (2048, 2048, 4096), (8192, 8192, 16384)]
    peaks = {plan_schedule(plan_pyramid(s, VoxelSize.of(1)), 1).peak_bytes for s in shapes}
    assert len(peaks) == 1


def test_levels_per_stage_must_be_positive() -> None:
    plan = plan_pyramid((64, 64, 64), VoxelSize.of(1))
    with pytest.raises(LayoutError, match="levels_per_stage must be at least 1"):
        plan_schedule(plan, 1, levels_per_stage=0)


def test_a_memory_limit_below_one_task_is_refused_before_work() -> None:
    plan = plan_pyramid((512, 1024, 1024), VoxelSize.of(1))
    with pytest.raises(LayoutError, match="raise memory_limit or choose smaller shards"):
        plan_schedule(plan, 4, memory_limit=64 * 2**20)
