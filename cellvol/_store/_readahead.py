"""Read-ahead hints: telling the kernel which bytes of a local file will be read soon.

A reader that hashes or copies what it has read leaves the disk idle meanwhile unless the
next reads are already queued. ``posix_fadvise(WILLNEED)`` queues them: the kernel reads the
range into the page cache in the background, and a later read finds it there. The hints cost
no memory of the process (the page cache may drop the pages again under pressure, and the
read then goes to the disk as usual) and never change what is read.

Linux reads at most one read-ahead window per hint, the larger of the device's read-ahead
(``read_ahead_kb``) and its largest request (``max_sectors_kb``); the rest of a longer range
is silently left out. A range is therefore hinted a window at a time, the window read from
the device's queue settings in sysfs, or the kernel's default read-ahead where the file
system has no single block device (network and union file systems, some volume managers).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

__all__ = ["will_read", "will_read_file"]

# The kernel's default read-ahead, which no device's window is smaller than by default.
_DEFAULT_WINDOW = 128 << 10
_SYSFS_BLOCK = Path("/sys/dev/block")


def will_read(descriptor: int, start: int = 0, length: int | None = None) -> int:
    """Ask the kernel to start reading ``length`` bytes at ``start`` of an open local file.

    Parameters
    ----------
    descriptor
        The file's open descriptor.
    start, length
        The range in bytes; ``length`` None means to the end of the file, and 0 means nothing.
        What lies past the end is left out.

    Returns
    -------
    int
        The bytes hinted: 0 where hints are not available or the file system refuses them.
    """
    if not hasattr(os, "posix_fadvise"):  # not on macOS or Windows: reads go the usual way
        return 0
    # A hint: a file system that refuses it is read the ordinary way.
    start = max(0, start)
    hinted = 0
    with contextlib.suppress(OSError):
        status = os.fstat(descriptor)
        stop = status.st_size if length is None else min(start + max(0, length), status.st_size)
        window = _window(status.st_dev)
        for at in range(start, stop, window):
            os.posix_fadvise(descriptor, at, min(window, stop - at), os.POSIX_FADV_WILLNEED)
            hinted += min(window, stop - at)
    return hinted


def will_read_file(path: str | os.PathLike[str], length: int | None = None) -> int:
    """As :func:`will_read` for the first ``length`` bytes of a local file (None: all of it).

    Returns the bytes hinted; 0 if the file cannot be opened: a missing or unreadable file is
    reported by the read that follows, not here.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    try:
        return will_read(descriptor, 0, length)
    finally:
        os.close(descriptor)


@functools.cache
def _window(device: int) -> int:
    """The most one hint reads on the file system of ``device`` (a ``st_dev``), in bytes."""
    entry = _SYSFS_BLOCK / f"{os.major(device)}:{os.minor(device)}"
    # A partition's queue settings are its disk's.
    for queue in (entry / "queue", entry / ".." / "queue"):
        try:
            read_ahead = int((queue / "read_ahead_kb").read_text())
            largest_request = int((queue / "max_sectors_kb").read_text())
        except (OSError, ValueError):
            continue
        return max(read_ahead, largest_request, 4) << 10
    return _DEFAULT_WINDOW
