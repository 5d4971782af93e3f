import os
import subprocess
import sys

import pytest

from cellvol.write._allocator import limit_malloc_arenas

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="malloc arenas are glibc's",
)


@glibc
def test_the_arena_limit_is_set_once_and_stays_set() -> None:
    assert limit_malloc_arenas() is True
    assert limit_malloc_arenas() is True


@glibc
def test_a_limit_chosen_in_the_environment_is_left_alone() -> None:
    code = "from cellvol.write._allocator import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_at_least_one_arena() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)


# Prepended to each script run in a fresh interpreter: mapped_alone() allocates a 16 MiB block
# and says whether malloc mapped it on its own (mallinfo2's count of mapped blocks goes up)
# or served it from its pool.
_MALLINFO = """
import ctypes, sys

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mapped_alone():
    before = libc.mallinfo2().hblks
    block = libc.malloc(16 * 2**20)
    alone = libc.mallinfo2().hblks > before
    libc.free(block)
    return alone
"""

_MAPPED_ALONE = """
from cellvol.write._allocator import reuse_large_blocks

applied = reuse_large_blocks() if sys.argv[1] == "reuse" else None
print(applied, mapped_alone())
"""


def _run_fresh(script: str, env: dict[str, str], *args: str) -> str:
    """stdout of ``script`` in a new interpreter whose only MALLOC_ settings are ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", _MALLINFO + script, *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _mapped_alone(env: dict[str, str], reuse: bool) -> str:
    return _run_fresh(_MAPPED_ALONE, env, "reuse" if reuse else "no")


@glibc
def test_large_blocks_come_from_the_pool_again_where_dask_had_stopped_it() -> None:
    dask_worker = {"MALLOC_TRIM_THRESHOLD_": "65536"}  # what distributed's nanny sets
    assert _mapped_alone(dask_worker, reuse=False) == "None True"
    assert _mapped_alone(dask_worker, reuse=True) == "True False"


@glibc
def test_large_blocks_come_from_the_pool_where_glibc_adapts_by_itself() -> None:
    assert _mapped_alone({}, reuse=True) == "True False"


# In a fresh interpreter: allocate and touch a shard's worth of chunk-sized blocks, free them
# all, do it again, and print the page faults of the second round.
_FAULTS_ON_REUSE = """
import ctypes, resource, sys
from cellvol.write._allocator import reuse_large_blocks

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "reuse":
    reuse_large_blocks()
size = 256 * 2**10

def round_of_blocks():
    blocks = [libc.malloc(size) for _ in range(64)]
    for block in blocks:
        libc.memset(block, 1, size)
    for block in blocks:
        libc.free(block)

round_of_blocks()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_of_blocks()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@glibc
def test_a_shards_freed_chunks_are_reused_without_new_pages() -> None:
    def faults(reuse: bool) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS_ON_REUSE, "reuse" if reuse else "no"],
            env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # 16 MiB of 4 KiB pages is 4096 faults when the pool was handed back to the kernel.
    without = faults(reuse=False)
    if without < 2000:
        pytest.skip(f"only {without} faults without the setting: this kernel maps larger pages")
    assert faults(reuse=True) < 200


@glibc
def test_a_threshold_chosen_in_the_environment_is_left_alone() -> None:
    chosen = {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}
    assert _mapped_alone(chosen, reuse=True) == "False True"


# In a fresh interpreter where glibc's adaptation is off (as in a dask worker): write a small
# pyramid, then say whether a 16 MiB block is still mapped on its own (malloc untouched), and
# again after the explicit opt-in.
_AFTER_A_WRITE = """
import numpy as np
import cellvol

cellvol.write_pyramid(np.zeros((64, 64, 64), np.uint8), sys.argv[1], voxel_size=1)
print(mapped_alone(), cellvol.tune_allocator(), mapped_alone())
"""


@glibc
def test_a_write_changes_no_malloc_setting_until_asked(tmp_path) -> None:
    dask_worker = {"MALLOC_TRIM_THRESHOLD_": "65536"}
    printed = _run_fresh(_AFTER_A_WRITE, dask_worker, str(tmp_path / "w.ome.zarr"))
    assert printed.split() == ["True", "True", "False"]
