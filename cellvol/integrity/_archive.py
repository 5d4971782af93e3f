"""Checking a zipped OME-Zarr (``.ozx``) as an archive: its directory, its order, each entry.

The image inside is checked as in any store; this adds what only the zip can get wrong. From
the central directory alone (:func:`archive_problems`): the archive comment RFC-9 asks for,
the order of the entries (the root ``zarr.json`` first, the other ``zarr.json`` breadth-first
before any other entry, the files stored in the directory's order), entries stored without
compression, no name twice. While each entry is read (:class:`EntryReader`): that its local
header is where the central directory says and names it, and its ZIP CRC-32, which covers
every entry, cellvol's records and metadata included, whatever the codecs inside.

Problems about one entry name its key; those about the archive as a whole have the key
``""``. All are of kind ``archive``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from cellvol._store import Archive
from cellvol._store._zip import LocalEntry, zip_crc32
from cellvol.integrity._report import Problem

__all__ = ["WHOLE_ARCHIVE", "EntryReader", "archive_problems"]

WHOLE_ARCHIVE: Final = ""
"""The key of a problem about the archive as a whole rather than one entry."""

_ROOT: Final = "zarr.json"
# Entries read together: stored at most this far apart, spanning at most this many bytes.
_RUN_GAP: Final = 64 << 10
_RUN_BYTES: Final = 4 << 20
_COMMENT_SHAPE: Final = (
    '{"ome": {"version": ..., "zipFile": {"centralDirectory": {"jsonFirst": true}}}}'
)


def archive_problems(archive: Archive) -> list[Problem]:
    """What is wrong with the archive's central directory and comment, read without its data."""
    if archive.missing_tail:
        return [
            Problem(
                WHOLE_ARCHIVE,
                "archive",
                f"the archive ends {archive.missing_tail} byte(s) before its comment does: "
                "it was truncated",
            )
        ]
    problems = _comment_problems(archive.comment)
    files = [info for info in archive.entries if not info.is_dir()]
    for name, count in sorted(Counter(info.filename for info in files).items()):
        if count > 1:
            problems.append(
                Problem(name, "archive", f"listed {count} times: a reader sees only one of them")
            )
    for info in files:
        if info.compress_type != zipfile.ZIP_STORED:
            problems.append(
                Problem(
                    info.filename,
                    "archive",
                    f"stored with compression method {info.compress_type}: RFC-9 entries are "
                    "stored uncompressed, to be read by plain byte ranges",
                )
            )
        if info.flag_bits & 0x1:
            problems.append(Problem(info.filename, "archive", "encrypted: it cannot be read"))
    problems += _order_problems([info.filename for info in files])
    offsets = [info.header_offset for info in archive.entries]
    if offsets != sorted(offsets):
        problems.append(
            Problem(
                WHOLE_ARCHIVE,
                "archive",
                "the entries are not stored in the order the central directory lists them",
            )
        )
    return problems


class EntryReader:
    """Reads an archive's entries by key, checking each as it goes.

    Its :meth:`read` stands where a store's read would, so that the scan reads each entry
    once: the ZIP CRC-32 is computed over the bytes the image's own checks then use.
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        # As zipfile does: of a name listed twice, the last record is the one a reader finds.
        self.entries = {info.filename: info for info in archive.entries if not info.is_dir()}

    def read(self, key: str) -> tuple[bytes | None, list[Problem]]:
        """The entry's bytes and what is wrong with it as a zip entry.

        The bytes are None if there is no such entry or it cannot be read.
        """
        info = self.entries.get(key)
        if info is None:
            return None, []
        return _checked(info, self.archive.read_entry(info))

    def runs(self, keys: Sequence[str]) -> list[list[str]]:
        """``keys`` in groups, each of entries stored near each other, for :meth:`read_run`."""
        known = sorted((self.entries[k] for k in keys if k in self.entries), key=_offset)
        runs: list[list[str]] = [[k] for k in keys if k not in self.entries]
        start = stop = -1
        for info in known:
            first, last = self.archive.extent(info)
            if runs and start >= 0 and first - stop <= _RUN_GAP and last - start <= _RUN_BYTES:
                runs[-1].append(info.filename)
                stop = max(stop, last)
            else:
                runs.append([info.filename])
                start, stop = first, last
        return runs

    def read_run(self, keys: Sequence[str]) -> list[tuple[bytes | None, list[Problem]]]:
        """As :meth:`read` for each key, the entries found in one read of the bytes they span."""
        infos = [self.entries[k] for k in keys if k in self.entries]
        if len(infos) < 2 or len(infos) != len(keys):
            return [self.read(key) for key in keys]
        return [
            _checked(info, entry)
            for info, entry in zip(infos, self.archive.read_entries(infos), strict=True)
        ]

    def prefetch(self, key: str, limit: int) -> int:
        """Ask for at most ``limit`` of the entry's bytes to be read ahead; the bytes asked for.

        Only for a local archive's known entries; else nothing (0).
        """
        info = self.entries.get(key)
        return 0 if info is None else self.archive.prefetch(info, limit)


def _offset(info: zipfile.ZipInfo) -> int:
    return info.header_offset


def _checked(info: zipfile.ZipInfo, entry: LocalEntry | None) -> tuple[bytes | None, list[Problem]]:
    """The entry's bytes, and its problems: where its header is, what it says, its CRC-32."""
    key = info.filename
    if entry is None:
        return None, [
            Problem(
                key,
                "archive",
                f"no local file header at byte {info.header_offset}, where the central "
                "directory places the entry",
            )
        ]
    problems: list[Problem] = []
    if entry.name != info.orig_filename:
        problems.append(Problem(key, "archive", f"its local file header names it {entry.name!r}"))
    if entry.method != info.compress_type:
        problems.append(
            Problem(
                key,
                "archive",
                f"compression method {entry.method} in its local header, "
                f"{info.compress_type} in the central directory",
            )
        )
    if len(entry.data) < info.compress_size:
        problems.append(
            Problem(
                key,
                "archive",
                f"its data runs past the end of the archive ({len(entry.data)} of "
                f"{info.compress_size} bytes)",
            )
        )
        return None, problems
    data = _decompressed(info, entry.data, problems)
    if data is None:
        return None, problems
    if len(data) != info.file_size:
        problems.append(
            Problem(
                key,
                "archive",
                f"{len(data)} bytes, but the central directory records {info.file_size}",
            )
        )
    crc = zip_crc32(data)
    if crc != info.CRC:
        problems.append(
            Problem(
                key,
                "archive",
                f"fails its ZIP CRC-32: the central directory records {info.CRC:08x}, "
                f"the entry's bytes give {crc:08x}",
            )
        )
    return data, problems


def _decompressed(info: zipfile.ZipInfo, data: bytes, problems: list[Problem]) -> bytes | None:
    if info.compress_type == zipfile.ZIP_STORED:
        return data
    if info.compress_type == zipfile.ZIP_DEFLATED:
        try:
            return zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as exc:
            problems.append(Problem(info.filename, "archive", f"does not inflate: {exc}"))
            return None
    problems.append(
        Problem(
            info.filename,
            "archive",
            f"compression method {info.compress_type} is not read by cellvol: not checked",
        )
    )
    return None


def _comment_problems(comment: bytes) -> list[Problem]:
    def problem(what: str) -> list[Problem]:
        return [
            Problem(
                WHOLE_ARCHIVE,
                "archive",
                f"the archive comment {what}; RFC-9's is {_COMMENT_SHAPE}",
            )
        ]

    if not comment:
        return problem("is missing")
    try:
        body: Any = json.loads(comment.decode("utf-8"))
    except ValueError:
        return problem("is not JSON")
    ome = body.get("ome") if isinstance(body, dict) else None
    if not isinstance(ome, dict) or not isinstance(ome.get("version"), str):
        return problem("names no OME-Zarr version")
    directory = ome.get("zipFile", {})
    directory = directory.get("centralDirectory", {}) if isinstance(directory, dict) else None
    if not isinstance(directory, dict) or directory.get("jsonFirst") is not True:
        return problem("does not announce the zarr.json documents first (jsonFirst)")
    return []


def _order_problems(names: Sequence[str]) -> list[Problem]:
    """RFC-9's order: the root ``zarr.json``, the others breadth-first, then the rest."""
    problems: list[Problem] = []
    if _ROOT in names and names[0] != _ROOT:
        problems.append(Problem(_ROOT, "archive", "the root zarr.json is not the first entry"))
    after_data = False
    depth = 0
    for name in names:
        if name == _ROOT:
            continue
        if name.rpartition("/")[2] != _ROOT:
            after_data = True
        elif after_data:
            problems.append(
                Problem(name, "archive", "listed after entries that are not zarr.json documents")
            )
        elif name.count("/") < depth:
            problems.append(Problem(name, "archive", "out of breadth-first order"))
        else:
            depth = name.count("/")
    return problems
