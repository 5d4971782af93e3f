import os
import subprocess
import sys

import pytest

from cellvol.allocator import limit_malloc_arenas

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
    code = "from cellvol.allocator import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_at_least_one_arena() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)
