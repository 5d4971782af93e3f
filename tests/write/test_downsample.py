import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellvol.errors import InvalidInputError
from cellvol.write._downsample import METHODS, downsample

shapes = st.tuples(*[st.integers(1, 9)] * 3)
factor_triples = st.tuples(*[st.sampled_from([1, 2, 3])] * 3)


def windows(shape: tuple[int, ...], factors: tuple[int, ...]):
    """Yield (output index, window slices) for a reference implementation."""
    out = tuple(-(-n // f) for n, f in zip(shape, factors, strict=True))
    for index in np.ndindex(*out):
        yield (
            index,
            tuple(
                slice(i * f, min((i + 1) * f, n))
                for i, f, n in zip(index, factors, shape, strict=True)
            ),
        )


def reference(block: np.ndarray, factors: tuple[int, ...], method: str) -> np.ndarray:
    out = np.empty(
        tuple(-(-n // f) for n, f in zip(block.shape, factors, strict=True)), block.dtype
    )
    for index, region in windows(block.shape, factors):
        values = block[region]
        if method == "mean":
            exact = values.astype(np.float64).mean()
            out[index] = np.rint(exact) if block.dtype.kind in "iu" else exact
        elif method == "mode":
            ids, counts = np.unique(values, return_counts=True)
            out[index] = ids[np.argmax(counts)]  # np.unique sorts: smallest among ties
        elif method == "min":
            out[index] = values.min()
        elif method == "max":
            out[index] = values.max()
        elif method == "stride":
            out[index] = values.flat[0]
    return out


@settings(max_examples=60, deadline=None)
@given(
    block=hnp.arrays(np.uint8, shapes),
    factors=factor_triples,
    method=st.sampled_from(METHODS),
)
def test_matches_reference_on_uint8(block: np.ndarray, factors, method: str) -> None:
    np.testing.assert_array_equal(
        downsample(block, factors, method), reference(block, factors, method)
    )


@settings(max_examples=40, deadline=None)
@given(block=hnp.arrays(np.int16, shapes), factors=factor_triples)
def test_integer_mean_is_float64_reference_rounded_half_to_even(block: np.ndarray, factors) -> None:
    result = downsample(block, factors, "mean")
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, reference(block, factors, "mean"))


def test_round_half_to_even_on_ties() -> None:
    block = np.array([[[0, 1]], [[2, 3]]], dtype=np.uint8)  # means: 0.5 -> 0 and 2.5 -> 2
    np.testing.assert_array_equal(downsample(block, (1, 1, 2), "mean").ravel(), [0, 2])


def test_no_overflow_at_the_top_of_the_range() -> None:
    block = np.full((4, 4, 4), 65535, dtype=np.uint16)
    assert downsample(block, (2, 2, 2), "mean").max() == 65535
    big = np.full((2, 2, 2), np.iinfo(np.int64).max // 4, dtype=np.int64)
    assert downsample(big, (2, 2, 2), "mean").item() == np.iinfo(np.int64).max // 4


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2), (4, 4, 4), (2, 1, 1)])
def test_whole_windows_round_at_the_ends_of_the_range(dtype: str, factors) -> None:
    # Windows of the extremes, ties next to them, and values just inside: where adding half a
    # window before the shift would overflow a too-narrow accumulator or round the wrong way.
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    window = int(np.prod(factors))
    rng = np.random.default_rng(window)
    picks = [lo, lo + 1, lo + 2, hi - 2, hi - 1, hi, 0, 1]
    block = rng.choice(picks, size=tuple(8 * f for f in factors)).astype(dtype)
    block[: factors[0], : factors[1], : factors[2]] = hi
    block[factors[0] : 2 * factors[0], : factors[1], : factors[2]] = lo
    tie = block[-factors[0] :, -factors[1] :, -factors[2] :].reshape(-1)
    tie[: window // 2], tie[window // 2 :] = hi - 1, hi  # a tie between hi - 1 and hi
    block[-factors[0] :, -factors[1] :, -factors[2] :] = tie.reshape(factors)
    np.testing.assert_array_equal(
        downsample(block, factors, "mean"), reference(block, factors, "mean")
    )


def test_float_stays_float() -> None:
    block = np.random.default_rng(0).random((5, 6, 7), dtype=np.float32)
    result = downsample(block, (2, 2, 2), "mean")
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, reference(block, (2, 2, 2), "mean"), rtol=1e-6)


def test_mode_keeps_ids_exactly() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([0, 7, 2**40 + 3, 2**63 - 1], dtype=np.uint64)
    labels = ids[rng.integers(0, 4, size=(8, 9, 10))]
    result = downsample(labels, (2, 2, 2), "mode")
    assert set(np.unique(result)) <= set(ids.tolist())
    np.testing.assert_array_equal(result, reference(labels, (2, 2, 2), "mode"))


def test_mode_tie_picks_smallest_id() -> None:
    block = np.array([[[5, 3]], [[3, 5]]], dtype=np.uint32)
    assert downsample(block, (2, 1, 2), "mode").item() == 3


def test_edge_windows_are_partial() -> None:
    block = np.arange(5, dtype=np.uint8).reshape(1, 1, 5)
    np.testing.assert_array_equal(downsample(block, (1, 1, 2), "mean").ravel(), [0, 2, 4])


def test_blocks_reduce_independently() -> None:
    rng = np.random.default_rng(2)
    volume = rng.integers(0, 255, size=(12, 10, 9), dtype=np.uint8)
    whole = downsample(volume, (2, 2, 2), "mean")
    halves = np.concatenate(
        [downsample(volume[:6], (2, 2, 2), "mean"), downsample(volume[6:], (2, 2, 2), "mean")]
    )
    np.testing.assert_array_equal(whole, halves)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((2, 2, 2)), (2, 2), "mean"), "2 downsampling factors for a 3-D"),
        ((np.zeros((2, 2, 2)), (0, 2, 2), "mean"), "positive integers"),
        ((np.zeros((2, 2, 2)), (2, 2, 2), "median"), "unknown downsampling method 'median'"),
        ((np.zeros((2, 2, 2), np.float32), (2, 2, 2), "mode"), "integer label data"),
        ((np.zeros((2, 2, 2), bool), (2, 2, 2), "mean"), "boolean"),
    ],
)
def test_bad_arguments(args, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        downsample(*args)


def exact_mean_half_even(values: np.ndarray) -> int:
    total, count = sum(int(v) for v in values.ravel()), values.size
    quotient, remainder = divmod(total, count)
    if 2 * remainder > count or (2 * remainder == count and quotient % 2):
        quotient += 1
    return quotient


@settings(max_examples=40, deadline=None)
@given(
    block=hnp.arrays(np.int64, shapes) | hnp.arrays(np.uint64, shapes),
    factors=factor_triples,
)
def test_64_bit_mean_is_exact(block: np.ndarray, factors) -> None:
    result = downsample(block, factors, "mean")
    assert result.dtype == block.dtype
    for index, region in windows(block.shape, factors):
        assert int(result[index]) == exact_mean_half_even(block[region])


@pytest.mark.parametrize("method", METHODS)
def test_slab_processing_equals_whole_block(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    import cellvol.write._downsample as module

    block = np.random.default_rng(3).integers(0, 9, size=(23, 12, 10), dtype=np.uint8)
    whole = downsample(block, (2, 2, 3), method)
    monkeypatch.setattr(module, "_SLAB_BYTES", 1)  # forces one window row per slab
    np.testing.assert_array_equal(downsample(block, (2, 2, 3), method), whole)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(
        ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64"]
    ),
)
def test_mode_counting_pairs_agrees_with_sorting(data: st.DataObject, dtype: str) -> None:
    """The pairwise kernel (small windows) and the sorting kernel give the same modes."""
    import cellvol.write._downsample as kernels

    shape = tuple(data.draw(st.integers(1, 9)) for _ in range(3))
    factors = tuple(data.draw(st.integers(1, 3)) for _ in range(3))
    info = np.iinfo(dtype)
    values = np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dtype)
    seed = data.draw(st.integers(0, 2**32 - 1))
    block = np.random.default_rng(seed).choice(values, size=shape)
    pairwise = kernels.downsample(block, factors, "mode")
    saved = kernels._PAIRWISE_WIDTH
    kernels._PAIRWISE_WIDTH = 0  # force the sorting kernel
    try:
        sorting = kernels.downsample(block, factors, "mode")
    finally:
        kernels._PAIRWISE_WIDTH = saved
    np.testing.assert_array_equal(pairwise, sorting)
    assert pairwise.dtype == sorting.dtype == block.dtype


@settings(max_examples=80, deadline=None)
@given(data=st.data(), factors=factor_triples)
def test_mode_of_label_like_blocks_matches_reference(data: st.DataObject, factors) -> None:
    """Blocks made of uniform patches (as label volumes are), whole and partial windows."""
    grid = tuple(data.draw(st.integers(1, 4)) for _ in range(3))
    patch = tuple(data.draw(st.integers(1, 5)) for _ in range(3))
    seed = data.draw(st.integers(0, 2**32 - 1))
    ids = np.random.default_rng(seed).integers(0, 4, size=grid).astype(np.uint32)
    block = np.kron(ids, np.ones(patch, dtype=np.uint32))
    cut = tuple(data.draw(st.integers(1, n)) for n in block.shape)
    block = np.ascontiguousarray(block[tuple(slice(0, c) for c in cut)])
    np.testing.assert_array_equal(
        downsample(block, factors, "mode"), reference(block, factors, "mode")
    )
