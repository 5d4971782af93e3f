"""Pure numpy kernels that shrink a block by integer factors per axis.

Each kernel takes a block and per-axis factors and returns the block reduced over windows of
``factors`` voxels. Names follow tensorstore's downsampling methods (``mean``, ``mode``,
``stride``, ``min``, ``max``) so that a pyramid described by one tool reads the same in the other.

Edges
    When an axis length is not a multiple of its factor, the last window is partial: it covers
    only the voxels that exist, and the reduction uses those alone (a partial ``mean`` divides by
    the number of voxels present, not by the full window). The output length is therefore
    ``ceil(n / factor)``. Because every window lies inside one block as long as blocks start at a
    multiple of the factor, blocks can be reduced independently and the result is the same as
    reducing the whole volume at once.

Integer means
    ``mean`` of integer data sums in a wide integer type (no overflow) and rounds the exact
    quotient half to even, the rule tensorstore uses. Each pyramid level is computed from the
    rounded level below it, as every multiscale viewer assumes.

Mode ties
    ``mode`` returns the most frequent value of each window; among equally frequent values it
    returns the smallest. This keeps label IDs exact (the output only ever holds IDs present in
    the window) and makes the choice independent of voxel order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError

__all__ = ["METHODS", "Method", "downsample"]

Method = Literal["mean", "mode", "stride", "min", "max"]
METHODS: Final[tuple[Method, ...]] = ("mean", "mode", "stride", "min", "max")

_Kernel = Callable[[npt.NDArray[np.generic], tuple[int, ...]], npt.NDArray[np.generic]]


def downsample(
    block: npt.NDArray[np.generic], factors: Sequence[int], method: Method = "mean"
) -> npt.NDArray[np.generic]:
    """Reduce ``block`` by integer ``factors`` along each axis with ``method``.

    Parameters
    ----------
    block
        An array of any dimensionality; its dtype is kept in the result.
    factors
        One positive integer per axis of ``block``; ``1`` leaves the axis alone.
    method
        ``"mean"``, ``"mode"``, ``"stride"``, ``"min"`` or ``"max"`` (see the module notes).

    Returns
    -------
    numpy.ndarray
        Shape ``ceil(block.shape / factors)``, dtype ``block.dtype``.

    Raises
    ------
    InvalidInputError
        For an unknown method, a factor that is not a positive integer, or a factor count that
        does not match ``block.ndim``.

    Examples
    --------
    >>> downsample(np.array([[1, 2], [3, 5]], dtype=np.uint8), (2, 2))
    array([[3]], dtype=uint8)
    """
    if method not in _KERNELS:
        raise InvalidInputError(
            f"unknown downsampling method {method!r}; expected one of {', '.join(METHODS)}"
        )
    factors = tuple(int(f) for f in factors)
    if len(factors) != block.ndim:
        raise InvalidInputError(
            f"got {len(factors)} downsampling factors for a {block.ndim}-D block {block.shape}"
        )
    if any(f < 1 for f in factors):
        raise InvalidInputError(f"downsampling factors must be positive integers, got {factors}")
    if all(f == 1 for f in factors):
        return block.copy()
    if block.size == 0:
        raise InvalidInputError(f"cannot downsample an empty block of shape {block.shape}")
    return _KERNELS[method](block, factors)


def _stride(block: npt.NDArray[np.generic], factors: tuple[int, ...]) -> npt.NDArray[np.generic]:
    return block[tuple(slice(None, None, f) for f in factors)].copy()


def _windows_last(
    block: npt.NDArray[np.generic], factors: tuple[int, ...], pad_value: float | int | None
) -> npt.NDArray[np.generic]:
    """View the block as ``(*out_shape, window_size)``, padding partial windows.

    Partial edge windows are padded with ``pad_value``; callers choose a value that the
    reduction ignores (``+inf`` for min, ``-inf`` for max) or mask it themselves.
    """
    pads = [(0, -n % f) for n, f in zip(block.shape, factors, strict=True)]
    if any(p for _, p in pads):
        block = np.pad(block, pads, mode="constant", constant_values=pad_value)
    out_shape = [n // f for n, f in zip(block.shape, factors, strict=True)]
    split: list[int] = []
    for n_out, f in zip(out_shape, factors, strict=True):
        split += [n_out, f]
    nd = block.ndim
    # (o0, f0, o1, f1, ...) -> (o0, o1, ..., f0, f1, ...) -> (o0, o1, ..., f0*f1*...)
    order = [2 * i for i in range(nd)] + [2 * i + 1 for i in range(nd)]
    windows = block.reshape(split).transpose(order)
    return windows.reshape(*out_shape, -1)


def _counts(shape: tuple[int, ...], factors: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """Number of real (unpadded) voxels in each output window, broadcastable to the output."""
    counts = np.ones([1] * len(shape), dtype=np.int64)
    for axis, (n, f) in enumerate(zip(shape, factors, strict=True)):
        per_axis = np.full(-(-n // f), f, dtype=np.int64)
        if n % f:
            per_axis[-1] = n % f
        view = [1] * len(shape)
        view[axis] = per_axis.size
        counts = counts * per_axis.reshape(view)
    return counts


def _mean(block: npt.NDArray[np.generic], factors: tuple[int, ...]) -> npt.NDArray[np.generic]:
    dtype = block.dtype
    if dtype.kind == "b":
        raise InvalidInputError("mean is not defined for boolean data; use 'mode' or 'max'")
    if dtype.kind in "iu" and dtype.itemsize == 8:
        return _mean_int64_exact(block, factors)
    if dtype.kind in "iu":
        # Sums of up to 32-bit values over any window a block holds stay below 2**53, so the
        # float64 quotient is exact where it matters: a true .5 tie is computed exactly.
        sums = _windows_last(block.astype(np.int64, copy=False), factors, 0).sum(axis=-1)
        quotient = sums / _counts(block.shape, factors)
        return np.rint(quotient).astype(dtype)
    if dtype.kind == "f":
        # Accumulate in float64 so the result does not depend on summation order in float32.
        work = block.astype(np.float64, copy=False)
        sums = _windows_last(work, factors, 0.0).sum(axis=-1)
        return (sums / _counts(block.shape, factors)).astype(dtype)
    raise InvalidInputError(f"mean is not defined for dtype {dtype}")


def _mean_int64_exact(
    block: npt.NDArray[np.generic], factors: tuple[int, ...]
) -> npt.NDArray[np.generic]:
    """Mean of 64-bit integers, exact, by long division on 32-bit halves.

    Sums of 64-bit values overflow 64 bits and float64 cannot hold them exactly, so the values
    are shifted to unsigned (adding 2**63 keeps parity, hence the half-to-even rounding),
    split into high and low 32-bit words, and each word summed on its own (no overflow for
    windows below 2**31 voxels), then divided as two digits of base 2**32.
    """
    dtype = block.dtype
    offset = np.uint64(2**63) if dtype.kind == "i" else np.uint64(0)
    unsigned = block.view(np.uint64) + offset if dtype.kind == "i" else block.astype(np.uint64)
    low_mask = np.uint64(0xFFFFFFFF)
    high = _windows_last(unsigned >> np.uint64(32), factors, 0).sum(axis=-1, dtype=np.uint64)
    low = _windows_last(unsigned & low_mask, factors, 0).sum(axis=-1, dtype=np.uint64)
    counts = np.broadcast_to(_counts(block.shape, factors), high.shape).astype(np.uint64)
    q_high, r_high = np.divmod(high, counts)
    # r_high < count, so r_high * 2**32 + low stays far below 2**64.
    q_low, remainder = np.divmod((r_high << np.uint64(32)) + low, counts)
    quotient = (q_high << np.uint64(32)) + q_low  # wraps only past the dtype range: impossible
    twice = remainder * np.uint64(2)
    round_up = (twice > counts) | ((twice == counts) & (quotient % np.uint64(2) == 1))
    quotient = quotient + round_up.astype(np.uint64)
    result = quotient - offset
    return result.view(np.int64) if dtype.kind == "i" else result


def _extreme(kind: Literal["min", "max"]) -> _Kernel:
    def kernel(block: npt.NDArray[np.generic], factors: tuple[int, ...]) -> npt.NDArray[np.generic]:
        dtype = block.dtype
        if dtype.kind == "f":
            pad: float | int = np.inf if kind == "min" else -np.inf
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            pad = int(info.max) if kind == "min" else int(info.min)
        elif dtype.kind == "b":
            pad = kind == "min"
        else:
            raise InvalidInputError(f"{kind} is not defined for dtype {dtype}")
        windows = _windows_last(block, factors, pad)
        reduced = windows.min(axis=-1) if kind == "min" else windows.max(axis=-1)
        return reduced.astype(dtype, copy=False)

    return kernel


def _mode(block: npt.NDArray[np.generic], factors: tuple[int, ...]) -> npt.NDArray[np.generic]:
    dtype = block.dtype
    if dtype.kind not in "iub":
        raise InvalidInputError(f"mode is meant for integer label data, got dtype {dtype}")
    # Pad partial windows by repeating the edge value of the same window would bias the count,
    # so mark padding with a flag array and give it zero weight instead.
    valid = _windows_last(np.ones(block.shape, dtype=bool), factors, False)
    windows = _windows_last(block, factors, 0)
    out_shape = windows.shape[:-1]
    flat = windows.reshape(-1, windows.shape[-1])
    flat_valid = valid.reshape(-1, valid.shape[-1])
    order = np.argsort(flat, axis=-1, kind="stable")
    values = np.take_along_axis(flat, order, axis=-1)
    weights = np.take_along_axis(flat_valid, order, axis=-1).astype(np.int64)
    # A run starts wherever the sorted value changes; count valid voxels per run.
    starts = np.ones_like(values, dtype=bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    run_id = np.cumsum(starts, axis=-1) - 1
    n_rows, width = values.shape
    run_counts = np.zeros((n_rows, width), dtype=np.int64)
    np.add.at(run_counts, (np.arange(n_rows)[:, None], run_id), weights)
    # argmax takes the first maximum, i.e. the smallest value among ties (values are sorted).
    best_run = np.argmax(run_counts, axis=-1)
    first_index_of_run = np.zeros((n_rows, width), dtype=np.int64)
    positions = np.broadcast_to(np.arange(width), (n_rows, width))
    first_index_of_run[starts.nonzero()[0], run_id[starts]] = positions[starts]
    chosen = first_index_of_run[np.arange(n_rows), best_run]
    result = values[np.arange(n_rows), chosen]
    return result.reshape(out_shape).astype(dtype, copy=False)


_KERNELS: Final[dict[str, _Kernel]] = {
    "mean": _mean,
    "mode": _mode,
    "stride": _stride,
    "min": _extreme("min"),
    "max": _extreme("max"),
}
