"""Keys: which voxels a numpy-style selection touches, and where a shard is stored."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from cellvol._codec._layout import Box

__all__ = ["box_of", "per_axis", "shard_object_key", "touched_chunks", "touched_ranges"]


def shard_object_key(level_path: str, index: Iterable[int]) -> str:
    """The store key of a shard object (zarr v3's default chunk key encoding)."""
    return f"{level_path}/c/" + "/".join(str(i) for i in index)


def per_axis(key: Any, ndim: int) -> tuple[Any, ...] | None:
    """``key`` as one part per axis (``...`` expanded, missing axes filled with ``:``).

    None when it cannot be read that way: more than one ``...``, or more parts than axes
    (``None``/newaxis, or a malformed key that zarr will judge).
    """
    parts = key if isinstance(key, tuple) else (key,)
    ellipses = [i for i, part in enumerate(parts) if part is Ellipsis]
    if len(ellipses) > 1:
        return None
    if ellipses:
        at = ellipses[0]
        fill = ndim - (len(parts) - 1)
        parts = (*parts[:at], *([slice(None)] * max(fill, 0)), *parts[at + 1 :])
    if len(parts) > ndim:
        return None
    return (*parts, *([slice(None)] * (ndim - len(parts))))


def box_of(key: Any, shape: Sequence[int]) -> tuple[Box, tuple[int | slice, ...]] | None:
    """The box a numpy-style ``key`` reads, and the key that selects the result from it.

    Integers, ``...`` and slices with step 1 or any negative step are covered (a reversed
    slice reads its box and reverses it). Returns None for index arrays, masks, ``None`` and
    steps above 1, which zarr reads (it skips the chunks a large step jumps over). Integers
    out of range raise ``IndexError`` as numpy does.
    """
    parts = per_axis(key, len(shape))
    if parts is None:
        return None
    box: Box = []
    within: list[int | slice] = []
    for axis, (part, n) in enumerate(zip(parts, shape, strict=True)):
        if isinstance(part, numbers.Integral):
            index = int(part)
            if not -n <= index < n:
                raise IndexError(f"index {index} is out of bounds for axis {axis} with size {n}")
            index %= n
            box.append((index, index + 1))
            within.append(0)
        elif isinstance(part, slice) and part.step in (None, 1):
            start, stop, _ = part.indices(n)
            box.append((start, max(start, stop)))
            within.append(slice(None))
        elif isinstance(part, slice) and isinstance(part.step, numbers.Integral) and part.step < 0:
            start, stop, step = part.indices(n)
            count = len(range(start, stop, step))
            if count == 0:
                box.append((0, 0))
                within.append(slice(None))
                continue
            low = start + step * (count - 1)
            box.append((low, start + 1))
            within.append(slice(start - low, None, step))
        else:
            return None
    return box, tuple(within)


def touched_ranges(key: Any, shape: Sequence[int]) -> list[tuple[int, int]]:
    """The ``[start, stop)`` index range a numpy-style selection touches along each axis.

    Integers, slices (any step) and ``...`` are exact; anything else (index arrays, masks)
    counts as touching the whole axis.
    """
    parts = per_axis(key, len(shape))
    if parts is None:
        return [(0, n) for n in shape]
    ranges: list[tuple[int, int]] = []
    for part, n in zip(parts, shape, strict=True):
        if isinstance(part, numbers.Integral):
            index = int(part) + n if int(part) < 0 else int(part)
            ranges.append((index, index + 1) if 0 <= index < n else (0, 0))
        elif isinstance(part, slice):
            start, stop, step = part.indices(n)
            if step > 0:
                ranges.append((start, max(start, stop)))
            else:
                ranges.append((stop + 1, start + 1) if start > stop else (0, 0))
        else:
            ranges.append((0, n))
    return ranges


def touched_chunks(key: Any, shape: Sequence[int], chunks: Sequence[int]) -> list[list[int]]:
    """Per axis, the chunk indices a numpy-style selection reads, in increasing order.

    Exact for integers, slices of any step (a step larger than a chunk skips chunks, as zarr
    does), ``...``, and 1-D integer or boolean index arrays; anything else counts as reading
    every chunk of the axis.
    """
    parts = per_axis(key, len(shape))
    if parts is None:
        return [list(range(-(-n // c))) for n, c in zip(shape, chunks, strict=True)]
    touched: list[list[int]] = []
    for part, n, c in zip(parts, shape, chunks, strict=True):
        every = range(-(-n // c))
        indices: Iterable[int]
        if isinstance(part, numbers.Integral):
            indices = [int(part) % n] if -n <= int(part) < n else []
        elif isinstance(part, slice):
            indices = range(*part.indices(n))
        else:
            array = np.asarray(part)
            if array.ndim == 1 and array.dtype.kind == "b" and array.size == n:
                indices = np.flatnonzero(array).tolist()
            elif array.ndim == 1 and array.dtype.kind in "iu":
                indices = [int(i) % n for i in array.tolist() if -n <= int(i) < n]
            else:
                indices = every
        touched.append(sorted({i // c for i in indices}))
    return touched
