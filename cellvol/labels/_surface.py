"""One segment's surface from its voxel mask: marching cubes, Taubin smoothing, orientation.

Pure computation on arrays in memory; reading masks and storing meshes is ``_meshes``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cellvol.labels._mesh_store import Mesh

__all__ = ["ITERATIONS", "TAUBIN", "boundary_faces", "estimated_triangles", "surface"]

#: Taubin's smoothing: a shrinking step (lambda) then an inflating one (mu), so that the
#: staircase of the voxel faces is smoothed away while the enclosed volume is kept.
_LAMBDA: Final = 0.5
_MU: Final = -0.53
ITERATIONS: Final = 10
TAUBIN: Final[dict[str, Any]] = {
    "method": "taubin",
    "lambda": _LAMBDA,
    "mu": _MU,
    "iterations": ITERATIONS,
}
# Marching cubes gives a little more than this many triangles per voxel face of a ball's
# surface: a sphere of V voxels has about 4.84 V^(2/3) faces.
_TRIANGLES_PER_FACE: Final = 2.8


def estimated_triangles(voxels: float) -> float:
    """Triangles marching cubes gives at least for a segment of ``voxels`` voxels (a ball's).

    A lower bound: a ball has the least surface for its volume, so choosing the first level
    whose estimate fits the budget never skips a level that would have fitted.
    """
    return float(_TRIANGLES_PER_FACE * 4.84 * max(voxels, 1.0) ** (2.0 / 3.0))


def boundary_faces(mask: npt.NDArray[np.bool_]) -> int:
    """How many voxel faces separate ``mask`` from the rest (its edges count as outside)."""
    faces = 0
    for axis in range(3):
        inner = int(np.count_nonzero(np.diff(mask, axis=axis)))
        ends = int(np.count_nonzero(mask.take(0, axis=axis))) + int(
            np.count_nonzero(mask.take(-1, axis=axis))
        )
        faces += inner + ends
    return faces


def surface(
    mask: npt.NDArray[np.bool_],
    origin: Sequence[float],
    step: Sequence[float],
    scale: Sequence[float],
    translation: Sequence[float],
    *,
    iterations: int = ITERATIONS,
) -> Mesh | None:
    """The closed, smoothed, outward-facing surface of ``mask`` in physical x, y, z.

    Parameters
    ----------
    mask
        The segment's voxels, ``(z, y, x)``; padded here by one voxel of background on every
        side, so the surface is closed even where the segment touches the mask's edges.
    origin
        The level voxel index of ``mask[0, 0, 0]`` (z, y, x).
    step
        Level voxels between neighbouring mask voxels along each axis (1 unless subsampled).
    scale, translation
        The level's voxel size and origin (z, y, x), in the unit the mesh is wanted in.
    iterations
        Taubin smoothing iterations (0: none).

    Returns
    -------
    Mesh or None
        None when the mask holds no voxel.
    """
    from skimage.measure import marching_cubes

    if not mask.any():
        return None
    padded = np.pad(mask, 1).astype(np.float32)
    vertices, faces, _, _ = marching_cubes(  # type: ignore[no-untyped-call]
        padded, 0.5, allow_degenerate=False
    )
    vertices = vertices.astype(np.float64)
    if iterations:
        vertices = _taubin(vertices, faces, iterations)
    # Mask voxel u (padded: u - 1) is level voxel origin + (u - 1) * step, at position
    # translation + index * scale.
    zyx = np.asarray(translation, np.float64) + (
        np.asarray(origin, np.float64) + (vertices - 1.0) * np.asarray(step, np.float64)
    ) * np.asarray(scale, np.float64)
    xyz = np.ascontiguousarray(zyx[:, ::-1], dtype=np.float32)
    triangles = np.ascontiguousarray(faces, dtype=np.uint32)
    mesh = Mesh(xyz, triangles)
    if mesh.volume < 0:  # reversing the axes (z, y, x to x, y, z) mirrors the winding
        mesh = Mesh(xyz, np.ascontiguousarray(triangles[:, ::-1]))
    return mesh


def _taubin(
    vertices: npt.NDArray[np.float64], faces: npt.NDArray[Any], iterations: int
) -> npt.NDArray[np.float64]:
    """Taubin lambda/mu smoothing with the uniform (umbrella) Laplacian of the mesh's edges.

    On a closed, consistently wound surface each edge is walked once in each direction, so
    the edges leaving a vertex name each of its neighbours once: grouped by their start,
    they are the rows of the averaging matrix, built as such (no sort of duplicates needed).
    """
    from scipy import sparse

    n = vertices.shape[0]
    start = faces.reshape(-1).astype(np.intp)
    end = np.roll(faces, -1, axis=1).reshape(-1).astype(np.intp)  # a->b, b->c, c->a
    order = np.argsort(start, kind="stable")
    degree = np.bincount(start, minlength=n)
    rows = np.concatenate(([0], np.cumsum(degree)))
    weights = np.repeat(1.0 / np.maximum(degree, 1), degree)
    average = sparse.csr_matrix((weights, end[order], rows), shape=(n, n))
    alone = np.flatnonzero(degree == 0)  # a vertex on no edge stays where it is
    smoothed = vertices.copy()
    for _ in range(iterations):
        for weight in (_LAMBDA, _MU):
            target = average @ smoothed
            if alone.size:
                target[alone] = smoothed[alone]
            smoothed += weight * (target - smoothed)
    return smoothed
