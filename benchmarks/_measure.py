"""Run a command in a fresh process and measure its wall time and peak memory.

Peak memory is sampled from /proc/<pid>/status every 10 ms: ``RssAnon`` (anonymous memory:
what a process really allocates, excluding the page cache of memory-mapped input files, which
the kernel can drop at will) and ``VmHWM`` (the kernel's own high-water mark of total RSS).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Measurement:
    seconds: float
    peak_anon_mib: float
    peak_rss_mib: float
    returncode: int
    output: str

    def as_dict(self) -> dict:
        return asdict(self)


def _read_status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "VmHWM"):
            values[key] = int(rest.split()[0])  # kB
    return values


def measure(command: list[str], timeout: float = 3600) -> Measurement:
    """Run ``command`` and return its time and peak memory (anonymous and total RSS)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"RssAnon": 0, "VmHWM": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for key, value in _read_status(process.pid).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        stop.set()
        sampler.join()
    return Measurement(
        seconds=time.perf_counter() - started,
        peak_anon_mib=peak["RssAnon"] / 1024,
        peak_rss_mib=peak["VmHWM"] / 1024,
        returncode=process.returncode,
        output=output[-4000:],
    )


def settle(source: Path) -> None:
    """Put every tool in the same start state: no dirty pages, the input cached as if read.

    Without it the first tool of a run read its input from disk while the others found it
    cached, and each tool paid for writing back the previous tool's output. The input's pages
    are dropped and read back, so it sits in the page cache as a deposited file that was read
    from disk does: in large folios. Left as the benchmark wrote it, a file stays cached in the
    small folios of the write path, and mapping those costs more: cellvol's page-dropping
    reader took 0.61 s per GiB on a freshly written copy and 0.25 s on the same file read back
    (2026-12-02). An input larger than the page cache can hold is read through anyway, so each
    tool finds its last part cached and its first part not. ``source`` is a file or a directory
    of files (a TIFF stack).
    """
    os.sync()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(descriptor, 64 * 2**20):
                pass
        finally:
            os.close(descriptor)
