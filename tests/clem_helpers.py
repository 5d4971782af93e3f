"""A correlative (LM to EM) pair with a known affine: the ground truth of the scene tests.

The LM image is made from the EM the way a fluorescence image of the same sample would look:
the EM, with bright fiducial spheres added at known EM positions, blurred by a Gaussian
point-spread function, sampled on a coarser LM grid that sits in EM space through a known
affine (a rotation about z, an anisotropic scale, a shift), and noised. ``TRUE_AFFINE`` maps LM
physical coordinates (nm, ``z, y, x``) to EM physical coordinates.

The pair also has a two-channel LM (:attr:`ClemPair.lm_channels`) imaged the same way: a
membrane-like stain (the EM's edges, no beads) and a blob marker (the fiducial beads alone).

:func:`synthetic_em` needs nothing beyond the package; :func:`sstem_em` takes a crop of the
real serial-section TEM stack in ``../shared/data/sstem``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

#: LM voxel, nm (z, y, x): coarser than EM along every axis, thicker in z.
LM_VOXEL = np.array([48.0, 32.0, 32.0])
#: The point-spread function's standard deviation, nm (z, y, x): wider along the optical axis.
PSF_SIGMA = np.array([60.0, 36.0, 36.0])
FIDUCIAL_RADIUS = 56.0
FIDUCIAL_BRIGHTNESS = 12.0


def true_affine() -> np.ndarray:
    """LM physical -> EM physical: rotate 10 degrees about z, scale 1.03/0.98/1.01, shift."""
    angle = np.deg2rad(10.0)
    rotation = np.eye(3)
    rotation[1:, 1:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([1.03, 0.98, 1.01])
    matrix[:3, 3] = [-20.0, 35.0, -60.0]
    return matrix


TRUE_AFFINE = true_affine()


@dataclass(frozen=True)
class ClemPair:
    em: np.ndarray  # float32, z, y, x; the fiducials show in it too (beads seen by both)
    em_voxel: np.ndarray  # nm
    lm: np.ndarray  # float32
    lm_voxel: np.ndarray
    fiducials_em: np.ndarray  # (n, 3) true positions in EM physical space, nm
    affine: np.ndarray  # LM physical -> EM physical
    lm_channels: np.ndarray  # float32, (2, z, y, x): membranes (EM edges), blobs (fiducials)

    def fiducials_lm(self) -> np.ndarray:
        """The fiducials' true positions in LM physical space, nm."""
        back = np.linalg.inv(self.affine)
        return (back[:3, :3] @ self.fiducials_em.T).T + back[:3, 3]


def synthetic_em(shape: tuple[int, int, int] = (64, 192, 192)) -> tuple[np.ndarray, np.ndarray]:
    """A small tomogram-like EM volume from cellvol's generator, and its voxel size (nm)."""
    from cellvol.synthetic import synthetic_tomogram

    em = np.asarray(synthetic_tomogram(shape, seed=26, dtype="float32"))
    return _unit_range(em), np.array([12.0, 8.0, 8.0])


def sstem_em(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    """A crop of the real ssTEM stack (50 x 4 x 4 nm), binned 2 in y and x to 8 nm."""
    import tifffile

    files = sorted((shared / "sstem" / "image").glob("slice_*.tif"),
                   key=lambda p: int(p.stem.split("_")[1]))[:12]  # fmt: skip
    stack = np.stack([tifffile.imread(f)[:256, :256] for f in files]).astype(np.float32)
    binned = stack.reshape(len(files), 128, 2, 128, 2).mean(axis=(2, 4))
    return _unit_range(binned), np.array([50.0, 8.0, 8.0])


def _unit_range(em: np.ndarray) -> np.ndarray:
    low, high = np.percentile(em, [1, 99])
    return np.clip((em - low) / (high - low), 0, 1).astype(np.float32)


def fiducial_positions(em_shape: tuple[int, ...], em_voxel: np.ndarray) -> np.ndarray:
    """Eight positions (nm) spread through the EM volume, away from its faces, not coplanar."""
    extent = np.asarray(em_shape) * em_voxel
    fractions = np.array(
        [
            [0.30, 0.25, 0.25],
            [0.70, 0.25, 0.75],
            [0.45, 0.75, 0.25],
            [0.60, 0.75, 0.75],
            [0.35, 0.50, 0.50],
            [0.65, 0.50, 0.25],
            [0.50, 0.25, 0.50],
            [0.40, 0.75, 0.50],
        ]
    )
    # Off the voxel grid, so that nothing lines up by chance.
    return fractions * extent + np.array([3.3, 2.7, 1.9])


def make_pair(em: np.ndarray, em_voxel: np.ndarray, seed: int = 5) -> ClemPair:
    """The LM image of ``em`` under :data:`TRUE_AFFINE` (see the module notes)."""
    fiducials = fiducial_positions(em.shape, em_voxel)
    beads = np.zeros_like(em)
    grid = np.stack(np.indices(em.shape), axis=-1) * em_voxel
    for centre in fiducials:
        beads[np.linalg.norm(grid - centre, axis=-1) <= FIDUCIAL_RADIUS] = FIDUCIAL_BRIGHTNESS
    marked = np.where(beads > 0, beads, em)
    rng = np.random.default_rng(seed)
    lm = _image_lm(marked, em_voxel, rng)
    channels = np.stack([_image_lm(membranes(em), em_voxel, rng), _image_lm(beads, em_voxel, rng)])
    return ClemPair(marked, em_voxel, lm, LM_VOXEL, fiducials, TRUE_AFFINE, channels)


def membranes(em: np.ndarray) -> np.ndarray:
    """A membrane stain of ``em`` on its grid: where it changes most (its edges), about 0-1."""
    edges = ndimage.gaussian_gradient_magnitude(em, 1.0)
    return (edges / max(float(np.percentile(edges, 99)), 1e-6)).astype(np.float32)


def _image_lm(volume: np.ndarray, em_voxel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``volume`` (on the EM grid) as the LM sees it: blurred, on the LM grid, noised."""
    blurred = ndimage.gaussian_filter(volume, PSF_SIGMA / em_voxel, mode="nearest")
    # LM grid: as many LM voxels as cover the EM extent.
    lm_shape = tuple(int(n) for n in np.ceil(np.asarray(volume.shape) * em_voxel / LM_VOXEL))
    lm_index = np.indices(lm_shape, dtype=np.float64).reshape(3, -1)
    lm_nm = lm_index * LM_VOXEL[:, None]
    em_nm = TRUE_AFFINE[:3, :3] @ lm_nm + TRUE_AFFINE[:3, 3][:, None]
    # An LM voxel integrates its whole volume: the blur above stands for that too.
    lm = ndimage.map_coordinates(blurred, em_nm / em_voxel[:, None], order=1, mode="nearest")
    lm = lm.reshape(lm_shape) + rng.normal(0, 0.02, lm_shape)
    return lm.astype(np.float32)


def write_points(path: Path, lm_nm: np.ndarray, em_nm: np.ndarray) -> Path:
    """A point-pair CSV (``lm_x,lm_y,lm_z,em_x,em_y,em_z``) from (n, 3) z, y, x arrays."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lm_x", "lm_y", "lm_z", "em_x", "em_y", "em_z"])
        for lm, em in zip(lm_nm, em_nm, strict=True):
            writer.writerow([*lm[::-1], *em[::-1]])
    return path


def weighted_centroid(values: np.ndarray, voxel: np.ndarray, near: np.ndarray, reach: float):
    """The intensity-weighted centroid (nm) of the bright blob within ``reach`` nm of ``near``.

    Voxels below half the blob's peak above the local background are left out, so that the
    EM texture around the blob does not pull the centroid.
    """
    low = np.maximum(np.floor((near - reach) / voxel).astype(int), 0)
    high = np.minimum(np.ceil((near + reach) / voxel).astype(int) + 1, values.shape)
    box = values[tuple(slice(a, b) for a, b in zip(low, high, strict=True))].astype(np.float64)
    background = np.median(box)
    weights = np.clip(box - background, 0, None)
    weights[weights < 0.5 * weights.max()] = 0
    index = np.indices(box.shape).reshape(3, -1) + low[:, None]
    return (index * weights.reshape(-1)).sum(axis=1) / weights.sum() * voxel
