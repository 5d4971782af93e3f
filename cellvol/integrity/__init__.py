"""Verifying a stored image: every object present, unchanged, and passing its checksums.

:func:`verify` scans an OME-Zarr image (and its label images) in a local directory, on S3
or over HTTP, and returns a :class:`VerifyReport` listing each :class:`Problem` found. It
reads, never writes: damage is reported, not repaired.
"""

from cellvol.integrity._report import Problem, ProblemKind, VerifyReport
from cellvol.integrity._verify import verify

__all__ = ["Problem", "ProblemKind", "VerifyReport", "verify"]
