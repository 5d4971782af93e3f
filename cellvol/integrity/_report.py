"""What a verification found: :class:`Problem` records and the :class:`VerifyReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Problem", "ProblemKind", "VerifyReport"]

ProblemKind = Literal[
    "missing",
    "unreadable",
    "metadata",
    "layout",
    "size",
    "fingerprint",
    "truncated",
    "index-checksum",
    "chunk-checksum",
    "chunk-range",
    "unlisted",
    "digest",
    "pyramid",
    "archive",
]
"""What is wrong with one object:

- ``missing``: an object the image needs (a level, a label image, a listed shard, the
  manifest, digests or completion marker of an image cellvol wrote) is absent;
- ``unreadable``: a metadata document or record is not valid JSON, or not what it must be;
- ``metadata``: the OME-Zarr metadata breaks the specification;
- ``layout``: an array's shape, dtype, chunks or shards differ from what the write recorded;
- ``size``, ``fingerprint``: a shard is not the object the write recorded under its key;
- ``truncated``: an object too short to hold its shard index;
- ``index-checksum``, ``chunk-checksum``: stored bytes fail their CRC32C;
- ``chunk-range``: a shard index points outside its object;
- ``unlisted``: an object under a level's ``c/`` prefix that the manifest does not list, or,
  in an image with digests, any object of the image they do not list;
- ``digest``: an object whose size or SHA-256 differs from the image's digests
  (``_cellvol/digests.json``; that record failing its own SHA-256 is ``unreadable``);
- ``pyramid`` (deep verification): a coarser level's shard is not what its method makes of
  the level below, or a coarser level's shape or dtype is not;
- ``archive``: in a ``.ozx``, an entry failing its ZIP CRC-32 or not where the central
  directory says, or the archive breaking RFC-9 (a compressed entry, the order of the
  ``zarr.json`` documents, the archive comment); key ``""`` for the archive as a whole.
"""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing found wrong with a stored image.

    Attributes
    ----------
    key
        The object's key, relative to the location verified (``"0/c/1/0/2"``,
        ``"labels/cells/zarr.json"``); ``""`` for a ``.ozx`` archive as a whole.
    kind
        What is wrong (see :data:`ProblemKind`).
    detail
        What was expected and what was found, in words.
    byte_range
        ``[start, stop)`` of the damaged bytes in the object, when known.
    """

    key: str
    kind: ProblemKind
    detail: str
    byte_range: tuple[int, int] | None = None

    def __str__(self) -> str:
        where = (
            "" if self.byte_range is None else f" (bytes {self.byte_range[0]}-{self.byte_range[1]})"
        )
        return f"{self.key or '(the archive)'}: {self.kind}{where}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """The result of :func:`cellvol.verify`.

    Attributes
    ----------
    url
        The location verified.
    problems
        Everything found wrong, sorted by key; empty for an intact image.
    images
        The images checked: ``""`` for the image itself, ``"labels/<name>"`` for each label
        image.
    shards, chunks, nbytes
        Stored objects read whole, chunks whose CRC32C was checked, and bytes read.
    unchecked
        What could not be checked, and why (an image without a write manifest, a store that
        cannot list its objects, a codec without checksums).
    recomputed
        Shards of coarser levels recomputed from the level below (deep verification only).
    crate
        How the RO-Crate metadata was checked: ``"digest"`` when its bytes match the image's
        digests (the crate cellvol wrote, its structure checked without ``rocrate``),
        ``"rocrate"`` when not (no digest recorded, or a changed crate: loaded with
        ``rocrate`` and checked in full); None without a crate.
    zarr_checksum
        With ``zarr_checksum=True``, the DANDI zarr checksum of every object under the
        location (``<md5>-<objects>--<bytes>``); None when not asked for or not computable.
    """

    url: str
    problems: list[Problem] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    shards: int = 0
    chunks: int = 0
    nbytes: int = 0
    unchecked: list[str] = field(default_factory=list)
    recomputed: int = 0
    zarr_checksum: str | None = None
    crate: Literal["digest", "rocrate"] | None = None

    @property
    def intact(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.problems

    def summary(self) -> str:
        """A few lines for people: the verdict, the counts, each problem and each gap."""
        verdict = "intact" if self.intact else f"DAMAGED: {len(self.problems)} problem(s)"
        lines = [
            f"{self.url}: {verdict}",
            f"checked {len(self.images)} image(s), {self.shards:,} object(s), "
            f"{self.chunks:,} chunk(s), {self.nbytes:,} bytes",
        ]
        if self.recomputed:
            lines.append(f"recomputed {self.recomputed:,} shard(s) of coarser levels")
        if self.zarr_checksum is not None:
            lines.append(f"zarr checksum: {self.zarr_checksum}")
        lines += [f"  {problem}" for problem in self.problems]
        lines += [f"not checked: {gap}" for gap in self.unchecked]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``cellvol verify --json`` prints)."""
        body = asdict(self)
        body["intact"] = self.intact
        for problem in body["problems"]:
            if problem["byte_range"] is not None:
                problem["byte_range"] = list(problem["byte_range"])
        return body
