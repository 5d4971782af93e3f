"""Checking objects against the image's digests, and what the completion marker promises."""

from __future__ import annotations

import json

from cellvol.integrity._report import Problem
from cellvol.ome._digests import COMPLETE_FORMAT, sha256_hex
from cellvol.ome._manifest import dumps_record

__all__ = ["digest_problem", "marker_format"]


def digest_problem(key: str, data: bytes, recorded: tuple[int, str]) -> Problem | None:
    """A ``digest`` problem when ``data`` is not the object the digests record, else None."""
    size, digest = recorded
    found = sha256_hex(data)
    if len(data) == size and found == digest:
        return None
    sizes = "" if len(data) == size else f" ({len(data)} bytes, recorded {size})"
    return Problem(
        key,
        "digest",
        f"SHA-256 {found}{sizes}, but the image's digests record {digest}: the object changed "
        "after it was written",
    )


def marker_format(raw: bytes) -> int | str:
    """The completion marker's format, or why it cannot be read.

    Markers that predate the format (no ``format``) count as 1.
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return f"the write's completion marker is not valid JSON ({exc})"
    try:
        canonical = dumps_record(body) if isinstance(body, dict) and "format" in body else raw
    except ValueError:  # NaN or infinity, which cellvol never writes
        canonical = b""
    if raw != canonical:
        # cellvol writes it canonically: other bytes, even of the same meaning, are a change.
        return "the write's completion marker is not in the form cellvol writes: it was changed"
    version = body.get("format", 1) if isinstance(body, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"the write's completion marker has no valid format: {version!r}"
    if version > COMPLETE_FORMAT:
        return (
            f"the write's completion marker is in format {version}, newer than this cellvol "
            f"reads ({COMPLETE_FORMAT})"
        )
    return version
