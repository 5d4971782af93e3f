"""What a test can see of this process's memory (Linux only: it reads ``/proc/self/smaps``)."""

from __future__ import annotations

import re
from pathlib import Path


def resident_kib(filename: str) -> int:
    """Resident KiB of this process's memory maps of ``filename``."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(filename)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total
