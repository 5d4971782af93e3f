"""Deterministic, procedurally generated cryo-electron-tomogram-like volumes.

:class:`SyntheticVolume` describes a volume of any size, terabytes included, that is never held
in memory: every voxel is a pure function of the seed, its global ``(z, y, x)`` position and the
volume's parameters, so any region renders on its own, identically however the volume is cut
into blocks. :func:`synthetic_tomogram` and :func:`synthetic_labels` wrap it as dask arrays.

Content (sizes assume a 2 nm voxel)
    A smooth background with low-frequency variation and a fine "cytoplasm" texture; vesicles
    with a lipid-bilayer profile (two thin dense leaflets around a slightly dense lumen);
    ribosome-like particles (a large and a small subunit); microtubule-like hollow filaments;
    near-Gaussian per-voxel noise. Contrast follows raw cryo-EM: dense material is *dark* on a
    brighter background. ``kind="labels"`` gives every vesicle (lumen and membrane) and
    particle a unique instance ID; 0 is background.

Why it is block-independent and scales
    Objects live on a grid of 64³-voxel cells. A cell's candidate objects come from a hash of
    (seed, cell, slot) and reach at most one cell from their centre, so a region needs only the
    cells within that reach. Vesicles and particles never overlap: a candidate touching one of
    higher priority is dropped (Matérn hard-core thinning), again looking one cell away. The
    noise is an integer hash of (seed, z, y, x). Voxel values use IEEE-exact operations only
    (+, -, *, /, sqrt, floor, comparisons; no libm), so they are bit-identical however the
    volume is split, and across machines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from cellvol.errors import InvalidInputError

if TYPE_CHECKING:
    import dask.array

__all__ = ["SyntheticVolume", "random_planes", "synthetic_labels", "synthetic_tomogram"]

type Kind = Literal["tomogram", "labels"]
type _F32 = npt.NDArray[np.float32]
type _F64 = npt.NDArray[np.float64]
type _I64 = npt.NDArray[np.int64]
type _U64 = npt.NDArray[np.uint64]
type _Index = int | np.integer[Any] | slice | EllipsisType
type _Box = tuple[slice, ...]
type _Ball = tuple[bool, _F64, float, float, _F64, int]  # vesicle?, centre, r, reach, axis, ID
type _Fil = tuple[_F64, _F64, float]  # centre, unit direction, half-length

_CELL: Final = 64
_N_VES, _N_BLOB = 3, 6  # candidate slots per cell; label IDs count these ball slots
_N_BALL: Final = _N_VES + _N_BLOB
_P_VES, _P_BLOB, _P_FIL = 0.5, 0.8, 0.12  # chance that a slot is used, at density 1
_R_VES, _R_BLOB = (8.0, 22.0), (4.0, 7.0)  # radius ranges
_LEAF_OFF, _LEAF_W = 1.2, 1.6  # leaflet distance from the mid-surface, leaflet half-width
_BLOB_EXT = 1.6  # the small subunit sits 0.9 r off-centre with radius 0.7 r
_FIL_LEN, _FIL_R, _FIL_W = (30.0, 90.0), 5.5, 1.8  # length range, wall radius, half-width
_AMP_LEAF, _AMP_LUMEN, _AMP_BLOB, _AMP_FIL = 1.0, 0.15, 1.6, 1.1  # densities, signal units
_AMP_WAVE, _AMP_TILT, _AMP_TEXTURE, _TEXTURE_STEP = 0.35, 0.12, 0.5, 4
_MEAN, _VAR = -0.05, 0.10  # signal statistics at density 1 (measured), to normalise blindly
_BALL_EXT: Final = max(_R_VES[1] + _LEAF_OFF + _LEAF_W, _R_BLOB[1] * _BLOB_EXT)
_REACH: Final = math.ceil(_FIL_LEN[1] / 2 + _FIL_R + _FIL_W)
assert _REACH <= _CELL, "objects must reach at most one cell away"
assert 2 * _BALL_EXT <= _CELL, "thinning must look at most one cell away"
_DTYPES: Final = {"tomogram": ("uint8", "uint16", "int8", "int16", "float32"),
                  "labels": ("uint32", "uint64")}  # fmt: skip
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_NEIGHBOURS: Final = np.array(list(np.ndindex(3, 3, 3)))  # offsets of a cell's 3³ block
_SLAB: Final = 1 << 16  # voxels per step of the per-voxel pass, so temporaries stay in cache


def _mix64(x: _U64) -> _U64:
    """Return the splitmix64 finaliser of ``x``, a well-mixing bijection of uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(*parts: npt.ArrayLike) -> _U64:
    """Hash integers (arrays broadcast together) to uint64; the order of ``parts`` matters."""
    h = np.zeros(1, np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            h = _mix64((h ^ np.asarray(part).astype(np.uint64)) + _GOLDEN)
    return h


def _uniform(h: _U64) -> _F64:
    """Map hashes to floats uniform in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _wave(t: _F64) -> _F64:
    """Return a smooth cosine-like wave of period 1 in [-1, 1], without libm."""
    tri = np.abs(2.0 * (t - np.floor(t)) - 1.0)
    return 2.0 * tri * tri * (3.0 - 2.0 * tri) - 1.0


def _bump(t: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
    """Return ``max(0, 1 - t²)²`` in place: a Gaussian-like bump supported on [-1, 1]."""
    np.multiply(t, t, out=t)
    np.subtract(1.0, t, out=t)
    np.maximum(t, 0.0, out=t)
    np.multiply(t, t, out=t)
    return t


def _dist2(c: list[_I64], centre: _F64) -> _F32:
    """Squared distances from ``centre`` to the grid of coordinates ``c``."""
    d = [(ci - m).astype(np.float32) for ci, m in zip(c, centre, strict=True)]
    d2: _F32 = (d[0] * d[0])[:, None, None] + (d[1] * d[1])[None, :, None] + d[2] * d[2]
    return d2


def _box(c: list[_I64], lo: _F64, hi: _F64) -> tuple[_Box, list[_I64]]:
    """Return the index box of the sorted coordinates ``c`` within [lo, hi], and its coordinates."""
    find = np.searchsorted
    box = tuple(slice(int(find(ci, math.ceil(a))), int(find(ci, math.floor(b), "right")))
                for ci, a, b in zip(c, lo, hi, strict=True))  # fmt: skip
    return box, [ci[s] for ci, s in zip(c, box, strict=True)]


def _ball_d2(c: list[_I64], ball: _Ball) -> tuple[_Box, _F32, _F32] | None:
    """Return the box a vesicle or particle reaches, squared distances to its centre(s) there."""
    is_ves, centre, r, reach, axis, _ = ball
    box, sub = _box(c, centre - reach, centre + reach)
    if min(len(s) for s in sub) == 0:
        return None
    d2 = _dist2(sub, centre)
    return box, d2, d2 if is_ves else _dist2(sub, centre + axis * (0.9 * r))


@dataclass(frozen=True, slots=True, init=False)
class SyntheticVolume:
    """A lazily rendered synthetic cryo-electron tomogram, or its instance labels.

    A read-only 3-D array (``shape``, ``dtype``, ``ndim``, ``nbytes``, numpy basic indexing)
    whose voxels are computed on demand, so :func:`dask.array.from_array` can wrap it and a
    terabyte shape costs nothing until a region is read. It has no ``__array__`` on purpose:
    ``np.asarray`` must not silently render a huge volume.

    Parameters
    ----------
    shape
        ``(z, y, x)`` voxel counts, each a positive integer.
    dtype
        For a tomogram ``uint8`` (default), ``uint16``, ``int8``, ``int16`` or ``float32``.
        Integer types put the mean a little above mid-range, with the full range spanning
        about 8.5 standard deviations; ``float32`` is roughly zero-mean with unit variance.
        For labels ``uint32`` or ``uint64``; the default is the smaller that holds every ID.
    seed
        An integer in ``[0, 2**64)``; the same seed always gives the same volume.
    kind
        ``"tomogram"`` for intensities, ``"labels"`` for instance IDs of vesicles and particles.
    noise
        Standard deviation of the per-voxel noise, relative to the contrast of one membrane
        leaflet; ``0`` gives a noise-free volume.
    density
        Scales the chance that each candidate object exists; ``0`` leaves background and noise
        only. Crowding saturates above about 1.5, as objects never overlap.

    Raises
    ------
    InvalidInputError
        For a shape that is not three positive integers, an unknown kind, a dtype the kind
        does not support, a seed outside ``[0, 2**64)``, or a bad noise or density.

    Examples
    --------
    >>> vol = SyntheticVolume((20_000, 40_000, 40_000), seed=1)
    >>> vol.nbytes // 10**12  # 32 TB, never materialised
    32
    >>> vol[10_000, 100:164, -64:].shape
    (64, 64)
    >>> SyntheticVolume((64, 64, 64), kind="labels").dtype
    dtype('uint32')
    """

    shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    seed: int
    kind: Kind
    noise: float
    density: float

    def __init__(
        self,
        shape: Sequence[int],
        dtype: npt.DTypeLike | None = None,
        seed: int = 0,
        kind: Kind = "tomogram",
        noise: float = 0.4,
        density: float = 1.0,
    ) -> None:
        items = tuple(shape) if isinstance(shape, Sequence | np.ndarray) else ()
        dims = tuple(int(n) for n in items if isinstance(n, int | np.integer) and n > 0)
        if len(items) != 3 or len(dims) != 3 or any(isinstance(n, bool) for n in items):
            raise InvalidInputError(f"shape {shape!r} is invalid; expected 3 positive integers")
        if kind not in _DTYPES:
            raise InvalidInputError(f"kind {kind!r} is invalid; expected 'tomogram' or 'labels'")
        n_ids = math.prod(-(-n // _CELL) for n in dims) * _N_BALL  # the largest label ID
        if dtype is None:
            dtype = "uint8" if kind == "tomogram" else "uint32" if n_ids < 2**32 else "uint64"
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = np.dtype("V1")
        if dt.name not in _DTYPES[kind]:
            raise InvalidInputError(
                f"dtype {dtype!r} is not supported for kind {kind!r}; expected one of "
                f"{', '.join(_DTYPES[kind])}"
            )
        if kind == "labels" and n_ids > np.iinfo(dt).max:
            raise InvalidInputError(f"dtype {dt.name} cannot hold the label IDs of shape {dims}")
        if (
            not isinstance(seed, int | np.integer)
            or isinstance(seed, bool)
            or not 0 <= seed < 2**64
        ):
            raise InvalidInputError(f"seed {seed!r} is invalid; expected an integer in [0, 2**64)")
        for name, x in (("noise", noise), ("density", density)):
            if not (isinstance(x, int | float | np.number) and math.isfinite(x) and x >= 0):
                raise InvalidInputError(f"{name} {x!r} is invalid; expected a finite number >= 0")
        values = (dims, dt, int(seed), kind, float(noise), float(density))
        for name, value in zip(self.__dataclass_fields__, values, strict=True):
            object.__setattr__(self, name, value)  # frozen: bypass the blocked __setattr__

    @property
    def ndim(self) -> int:
        """Number of dimensions, always 3."""
        return 3

    @property
    def size(self) -> int:
        """Number of voxels."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the whole volume would take in memory."""
        return self.size * self.dtype.itemsize

    def render(self, region: tuple[slice, slice, slice]) -> npt.NDArray[Any]:
        """Render ``region``, three slices with ``0 <= start <= stop <= n`` and step 1.

        ``None`` bounds mean ``0`` and ``n``; use indexing for negative indices or steps.
        Returns a new array of ``self.dtype``; raises :class:`InvalidInputError` for anything
        else or for a region outside the volume.

        Examples
        --------
        >>> SyntheticVolume((64, 64, 64)).render((slice(0, 8), slice(8, 24), slice(None))).shape
        (8, 16, 64)
        """
        if not (isinstance(region, tuple) and len(region) == 3):
            raise InvalidInputError(f"region {region!r} is invalid; expected a tuple of 3 slices")
        coords = []
        for axis, (s, n) in enumerate(zip(region, self.shape, strict=True)):
            start, stop, step = (s.start, s.stop, s.step) if isinstance(s, slice) else (0, 0, 0)
            start, stop = (0 if start is None else start), (n if stop is None else stop)
            if (
                step not in (None, 1)
                or not isinstance(start, int | np.integer)
                or not isinstance(stop, int | np.integer)
            ):
                raise InvalidInputError(f"region[{axis}] = {s!r} is invalid; expected a slice "
                                        "with integer bounds and step 1")  # fmt: skip
            if not 0 <= start <= stop <= n:
                raise InvalidInputError(f"region[{axis}] = {s!r} is out of bounds; expected "
                                        f"0 <= start <= stop <= {n}")  # fmt: skip
            coords.append(np.arange(start, stop, dtype=np.int64))
        return self._render(coords)

    def __getitem__(self, key: _Index | tuple[_Index, ...]) -> npt.NDArray[Any]:
        """Render the voxels numpy basic indexing selects (a strided slice renders only those).

        Integers (negative ones count from the end), slices with any step and one ``Ellipsis``
        are accepted. An integer out of range, a zero step, too many indices, fancy indexing or
        ``None`` raise :class:`InvalidInputError`.
        """
        items = key if isinstance(key, tuple) else (key,)
        n_ellipsis = sum(k is Ellipsis for k in items)
        if n_ellipsis > 1 or len(items) - n_ellipsis > 3:
            raise InvalidInputError(f"index {key!r} is invalid for a 3-D volume")
        full: list[Any] = []
        for k in items:
            full.extend([slice(None)] * (4 - len(items)) if k is Ellipsis else [k])
        full.extend([slice(None)] * (3 - len(full)))
        coords: list[_I64] = []
        view: list[slice | int] = []
        for axis, (k, n) in enumerate(zip(full, self.shape, strict=True)):
            if isinstance(k, slice):
                try:
                    r = range(*k.indices(n))
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"index {k!r} on axis {axis}: {exc}") from None
                up = r if r.step > 0 else r[::-1]  # render ascending, then flip
                coords.append(np.arange(up.start, up.stop, up.step, dtype=np.int64))
                view.append(slice(None, None, -1 if r.step < 0 else 1))
            elif isinstance(k, int | np.integer) and not isinstance(k, bool):
                if not -n <= k < n:
                    raise InvalidInputError(f"index {k} is out of range for axis {axis} (size {n})")
                coords.append(np.array([int(k) % n], np.int64))
                view.append(0)
            else:
                raise InvalidInputError(
                    f"index {k!r} is unsupported; expected an integer, a slice or Ellipsis"
                )
        return self._render(coords)[tuple(view)]

    def to_dask(self, chunks: Any = (128, 128, 128)) -> dask.array.Array:
        """Return the volume as a dask array with one small rendering task per block.

        ``chunks`` is anything :func:`dask.array.from_array` accepts. The graph holds this
        object once (a few hundred bytes) plus one getter per block, so it stays small and
        picklable for any shape; nothing renders before ``compute``.

        Examples
        --------
        >>> SyntheticVolume((10_000, 10_000, 10_000)).to_dask((250, 500, 500)).numblocks
        (40, 20, 20)
        """
        import dask.array as da
        from dask.base import tokenize

        try:
            normal = da.core.normalize_chunks(chunks, self.shape, dtype=self.dtype)  # type: ignore[no-untyped-call]
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"chunks {chunks!r} are invalid: {exc}") from None
        name = f"synthetic-{self.kind}-{tokenize(self, normal)}"
        meta = np.empty((0, 0, 0), self.dtype)
        arr: dask.array.Array = da.from_array(  # type: ignore[no-untyped-call]
            self, chunks=normal, name=name, asarray=False, fancy=False, meta=meta
        )
        return arr

    def _objects(self, c: list[_I64]) -> tuple[list[_Ball], list[_Fil]]:
        """Return the vesicles, particles and filaments that may reach the coordinates ``c``."""
        grid = np.array([-(-n // _CELL) for n in self.shape])
        lo, hi = np.array([ci[0] for ci in c], float), np.array([ci[-1] for ci in c], float)
        # Cells whose objects may reach c, plus one ring of neighbours for the thinning.
        first = np.maximum(0, (lo.astype(int) - _REACH) // _CELL) - 1
        last = np.minimum(grid - 1, (hi.astype(int) + _REACH) // _CELL) + 1
        axes = [np.arange(a, b + 1) for a, b in zip(first, last, strict=True)]
        cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        # Per cell and slot: 0 presence, 1-3 centre, 4 size, 5 priority, 6-8 direction.
        key = _hash(self.seed, 1, cells[..., 0], cells[..., 1], cells[..., 2])
        salt = _GOLDEN * np.arange(1, 9 * (_N_BALL + 1) + 1, dtype=np.uint64)
        u = _uniform(_mix64(key[..., None] + salt).reshape(*key.shape, _N_BALL + 1, 9))
        centre = (cells[..., None, :] + u[..., 1:4]) * _CELL
        axis = 2.0 * u[..., 6:9] - 1.0
        axis /= np.sqrt(axis[..., :1] ** 2 + axis[..., 1:2] ** 2 + axis[..., 2:] ** 2) + 1e-9
        is_ves = np.arange(_N_BALL + 1) < _N_VES
        p = np.array([_P_VES] * _N_VES + [_P_BLOB] * _N_BLOB + [_P_FIL]) * self.density
        in_grid = np.all((cells >= 0) & (cells < grid), axis=-1)
        present = (u[..., 0] < p) & in_grid[..., None]
        ves_r = _R_VES[0] + (_R_VES[1] - _R_VES[0]) * u[..., 4]
        blob_r = _R_BLOB[0] + (_R_BLOB[1] - _R_BLOB[0]) * u[..., 4]
        half = 0.5 * (_FIL_LEN[0] + (_FIL_LEN[1] - _FIL_LEN[0]) * u[..., 4])
        size = np.where(is_ves, ves_r, blob_r)
        reach = np.where(is_ves, size + _LEAF_OFF + _LEAF_W, size * _BLOB_EXT)
        reach[..., -1] = half[..., -1] + _FIL_R + _FIL_W
        prio = u[..., 5] + ~is_ves  # vesicles win over particles
        inner = (slice(1, -1), slice(1, -1), slice(1, -1))
        box_lo, box_hi = (
            centre[inner] - reach[inner][..., None],
            centre[inner] + reach[inner][..., None],
        )
        near = present[inner] & np.all((box_hi >= lo) & (box_lo <= hi), axis=-1)
        # Matérn hard-core thinning: drop a ball touching a candidate of higher priority in its
        # own or a neighbouring cell (balls are smaller than half a cell, so none further away).
        cand = np.argwhere(near[..., :_N_BALL])
        beaten = np.zeros(len(cand), bool)
        for s in range(0, len(cand), 4096):  # bounded memory for huge strided reads
            k = cand[s : s + 4096]
            z, y, x = (k[:, None, a] + _NEIGHBOURS[:, a] for a in range(3))
            i = (k[:, 0] + 1, k[:, 1] + 1, k[:, 2] + 1, k[:, 3])
            d = centre[i][:, None, None, :] - centre[z, y, x, :_N_BALL]
            d2 = d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2
            touch = d2 < (reach[i][:, None, None] + reach[z, y, x, :_N_BALL]) ** 2
            stronger = present[z, y, x, :_N_BALL] & (
                prio[z, y, x, :_N_BALL] < prio[i][:, None, None]
            )
            beaten[s : s + 4096] = (touch & stronger).any(axis=(1, 2))
        ids = (cells[..., 0] * grid[1] + cells[..., 1]) * grid[2] + cells[..., 2]
        balls = []
        for k in cand[~beaten]:
            i = (k[0] + 1, k[1] + 1, k[2] + 1, k[3])
            uid = int(ids[i[:3]]) * _N_BALL + int(k[3]) + 1
            balls.append(
                (bool(is_ves[k[3]]), centre[i], float(size[i]), float(reach[i]), axis[i], uid)
            )
        fils = []
        for k in np.argwhere(near[..., -1]) + 1:
            i = (*k, -1)
            fils.append((centre[i], axis[i], float(half[i])))
        return balls, fils

    def _render(self, c: list[_I64]) -> npt.NDArray[Any]:
        """Render the grid of the ascending coordinate arrays ``c``."""
        shape = tuple(len(ci) for ci in c)
        if 0 in shape:
            return np.empty(shape, self.dtype)
        balls, fils = self._objects(c)
        if self.kind == "labels":
            out = np.zeros(shape, self.dtype)
            for ball in balls:
                if (geometry := _ball_d2(c, ball)) is not None:
                    box, d2, d2s = geometry
                    if ball[0]:
                        mask = d2 <= (ball[2] + _LEAF_OFF + 0.5 * _LEAF_W) ** 2
                    else:
                        mask = (d2 <= ball[2] ** 2) | (d2s <= (0.7 * ball[2]) ** 2)
                    out[box][mask] = ball[5]  # balls never overlap, so order is irrelevant
            return out
        sd = math.sqrt(_VAR + self.noise**2)
        if self.dtype.kind == "f":
            gain, offset, lo, hi = 1 / sd, -_MEAN / sd, -math.inf, math.inf
        else:
            lo, hi = float(np.iinfo(self.dtype).min), float(np.iinfo(self.dtype).max)
            gain = (hi - lo) / 8.5 / sd
            offset = lo + 0.53 * (hi - lo) - gain * _MEAN
        # Objects subtract density (dark on bright) in a fixed global order: bit-exact sums.
        acc = np.zeros(shape, np.float32)
        for ball in balls:
            if (geometry := _ball_d2(c, ball)) is None:
                continue
            box, d2, d2s = geometry
            r = ball[2]
            if ball[0]:
                d = np.sqrt(d2)
                dens = _bump((d - (r + _LEAF_OFF)) * (1 / _LEAF_W))
                dens += _bump((d - (r - _LEAF_OFF)) * (1 / _LEAF_W))
                dens *= _AMP_LEAF * gain
                dens += (d2 < (r - _LEAF_OFF) ** 2) * np.float32(_AMP_LUMEN * gain)
            else:
                dens = np.minimum(d2 * (1 / r**2), d2s * (1 / (0.7 * r) ** 2))
                np.multiply(dens, dens, out=dens)  # 1 - q² for a flat top and a soft edge
                np.subtract(1, dens, out=dens)
                np.maximum(dens, 0, out=dens)
                dens *= _AMP_BLOB * gain
            acc[box] -= dens
        for centre, axis, half in fils:
            reach = np.abs(axis) * half + _FIL_R + _FIL_W
            box, sub = _box(c, centre - reach, centre + reach)
            if min(len(s) for s in sub) == 0:
                continue
            start = centre - axis * half
            pz, py, px = ((ci - m).astype(np.float32) for ci, m in zip(sub, start, strict=True))
            pz, py = pz[:, None, None], py[:, None]
            t = pz * np.float32(axis[0]) + py * np.float32(axis[1]) + px * np.float32(axis[2])
            rho = np.sqrt(np.maximum(pz * pz + py * py + px * px - t * t, 0))
            dens = _bump((rho - _FIL_R) * (1 / _FIL_W))
            dens *= np.clip(np.minimum(t, 2 * half - t) * 0.25, 0, 1)  # fade out at the ends
            dens *= _AMP_FIL * gain
            acc[box] -= dens
        return self._add_field(c, acc, gain, offset, lo, hi)

    def _add_field(
        self, c: list[_I64], acc: _F32, gain: float, offset: float, lo: float, hi: float
    ) -> npt.NDArray[Any]:
        """Add background, texture and noise to ``acc`` slab by slab and convert to the dtype."""
        u = _uniform(_hash(self.seed, 2, np.arange(12)))
        w = [_wave(ci / (150 + 250 * u[a]) + u[6 + a]) for a, ci in enumerate(2 * c)]
        wave_z = w[0].astype(np.float32)
        wave_yx = (_AMP_WAVE * gain * w[1][:, None] * w[2]).astype(np.float32)
        noise_k = self.noise * gain / 147.80  # the sd of a sum of 4 uniform bytes
        tilt_z = (_AMP_TILT * gain * w[3]).astype(np.float32)
        tilt_yx = _AMP_TILT * gain * (w[4][:, None] + w[5]) + (offset - 510 * noise_k)
        tilt_yx = tilt_yx.astype(np.float32)
        # Texture: values hashed on a 4-voxel lattice, interpolated linearly along each axis.
        idx, frac, knots = [], [], []
        for ci in c:
            li = ci // _TEXTURE_STEP
            k = np.unique(np.concatenate([li, li + 1]))
            idx.append((np.searchsorted(k, li), np.searchsorted(k, li + 1)))
            frac.append(((ci - li * _TEXTURE_STEP) / _TEXTURE_STEP).astype(np.float32))
            knots.append(k)
        lattice = _uniform(
            _hash(self.seed, 3, knots[0][:, None, None], knots[1][:, None], knots[2])
        )
        lattice = ((2 * lattice - 1) * (_AMP_TEXTURE * gain)).astype(np.float32)
        tx = lattice.take(idx[2][0], axis=2)  # take(), unlike fancy indexing, stays C-ordered
        tx += (lattice.take(idx[2][1], axis=2) - tx) * frac[2]
        ty = tx.take(idx[1][0], axis=1)
        ty += (tx.take(idx[1][1], axis=1) - ty) * frac[1][:, None]
        # Noise: per-axis 32-bit keys, mixed per voxel (lowbias32); the sum of the four bytes
        # of the hash is near-Gaussian (Irwin-Hall).
        hz, hy, hx = ((_hash(self.seed, 4 + a, ci) >> np.uint64(32)).astype(np.uint32)
                      for a, ci in enumerate(c))  # fmt: skip
        nz, ny, nx = acc.shape
        out = np.empty(acc.shape, self.dtype)
        step = max(1, _SLAB // (ny * nx))
        buf = np.empty((4, min(step, nz), ny, nx), np.uint32)
        for z0 in range(0, nz, step):
            z1 = min(nz, z0 + step)
            h, tmp = buf[0, : z1 - z0], buf[1, : z1 - z0]
            f0, f1 = buf[2, : z1 - z0].view(np.float32), buf[3, : z1 - z0].view(np.float32)
            a = acc[z0:z1]
            np.bitwise_xor((hz[z0:z1, None] + hy)[:, :, None], hx, out=h)
            for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, 1)):
                np.right_shift(h, shift, out=tmp)
                h ^= tmp
                h *= np.uint32(mult)
            for shift, mask in ((8, 0x00FF00FF), (16, 0xFFFF)):  # add bytes pairwise, in lanes
                np.right_shift(h, shift, out=tmp)
                h &= mask
                tmp &= mask
                h += tmp
            a += np.multiply(h.view(np.int32), np.float32(noise_k), out=f0, dtype=np.float32)
            a += np.multiply(wave_yx, wave_z[z0:z1, None, None], out=f0)
            a += tilt_yx
            a += tilt_z[z0:z1, None, None]
            t0 = ty.take(idx[0][0][z0:z1], axis=0, out=f0, mode="clip")
            t1 = ty.take(idx[0][1][z0:z1], axis=0, out=f1, mode="clip")
            t1 -= t0
            t1 *= frac[0][z0:z1, None, None]
            a += t0
            a += t1
            if self.dtype.kind != "f":
                np.rint(a, out=a)
                np.clip(a, lo, hi, out=a)
            out[z0:z1] = a
        return out


def synthetic_tomogram(
    shape: Sequence[int],
    *,
    dtype: npt.DTypeLike = "uint8",
    seed: int = 0,
    chunks: Any = (128, 128, 128),
    noise: float = 0.4,
    density: float = 1.0,
) -> dask.array.Array:
    """Return a lazy synthetic cryo-electron tomogram (see :class:`SyntheticVolume`) in dask.

    Examples
    --------
    >>> arr = synthetic_tomogram((64, 128, 128), chunks=64, seed=3)
    >>> arr.numblocks, arr.dtype, bool((arr == synthetic_tomogram(arr.shape, seed=3)).all())
    ((1, 2, 2), dtype('uint8'), True)
    """
    return SyntheticVolume(shape, dtype, seed, "tomogram", noise, density).to_dask(chunks)


def synthetic_labels(
    shape: Sequence[int],
    *,
    seed: int = 0,
    chunks: Any = (128, 128, 128),
    density: float = 1.0,
    dtype: npt.DTypeLike | None = None,
) -> dask.array.Array:
    """Return the instance labels of :func:`synthetic_tomogram` (same seed and density).

    Each vesicle and particle has an ID made from its cell and slot; 0 is background.

    Examples
    --------
    >>> labels = synthetic_labels((64, 128, 128), seed=3, chunks=64).compute()
    >>> int(labels.min()), len(np.unique(labels)) > 5
    (0, True)
    """
    return SyntheticVolume(shape, dtype, seed, "labels", 0.0, density).to_dask(chunks)


def random_planes(
    shape: Sequence[int], axis: int, count: int, seed: int = 0, side: int = 512
) -> list[tuple[int | slice, ...]]:
    """Selection keys of ``count`` random ``side`` x ``side`` planes perpendicular to ``axis``.

    Planes are clipped to ``shape``; the same seed gives the same planes. This is the reading
    pattern of the benchmarks.
    """
    rng = np.random.default_rng(seed)
    keys: list[tuple[int | slice, ...]] = []
    for _ in range(count):
        key: list[int | slice] = []
        for a, n in enumerate(shape):
            if a == axis:
                key.append(int(rng.integers(0, n)))
            else:
                length = min(side, int(n))
                start = int(rng.integers(0, int(n) - length + 1))
                key.append(slice(start, start + length))
        keys.append(tuple(key))
    return keys
