"""The shared decoded-chunk cache: bounded, least recently used first, configurable."""

import numpy as np
import pytest

from cellvol._codec import _cache as cache_module
from cellvol._codec._cache import ChunkCache, default_cache
from cellvol.errors import InvalidInputError


def _block(n: int, value: int = 0) -> np.ndarray:
    return np.full(n, value, dtype=np.uint8)


def test_evicts_least_recently_used_within_the_budget() -> None:
    cache = ChunkCache(8000)
    for i in range(8):
        cache.put(i, _block(1000, i))
    assert cache.get(0) is not None  # 0 is now the most recently used
    cache.put(8, _block(1000, 8))
    assert cache.get(1) is None  # the least recently used went first
    assert cache.get(0) is not None
    stats = cache.stats()
    assert stats.nbytes <= stats.max_bytes == 8000
    assert stats.entries == 8


def test_entries_are_read_only_and_large_ones_are_not_kept() -> None:
    cache = ChunkCache(8000)
    cache.put("a", _block(1000))
    stored = cache.get("a")
    assert stored is not None
    with pytest.raises(ValueError, match="read-only"):
        stored[0] = 1
    cache.put("big", _block(1001))  # over an eighth of the budget
    assert cache.get("big") is None


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    cache = ChunkCache(8000)
    cache.put("a", _block(1000))
    cache.put("a", _block(500))
    assert cache.stats().nbytes == 500
    cache.clear()
    assert cache.stats() == cache_module.CacheStats(0, 0, 0, 0, 8000)


def test_zero_disables_and_bad_budgets_are_refused() -> None:
    off = ChunkCache(0)
    off.put("a", _block(1))
    assert off.get("a") is None
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(InvalidInputError, match="max_bytes must be an integer >= 0"):
            ChunkCache(bad)  # type: ignore[arg-type]


def test_default_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "_default", None)
    monkeypatch.setenv("CELLVOL_CACHE_BYTES", "12345")
    assert default_cache().max_bytes == 12345
    assert default_cache() is default_cache()
    monkeypatch.setattr(cache_module, "_default", None)
    monkeypatch.setenv("CELLVOL_CACHE_BYTES", "lots")
    with pytest.raises(InvalidInputError, match="CELLVOL_CACHE_BYTES='lots' is not a whole"):
        default_cache()
    monkeypatch.setattr(cache_module, "_default", None)
    monkeypatch.delenv("CELLVOL_CACHE_BYTES")
    assert default_cache().max_bytes == cache_module.DEFAULT_CACHE_BYTES
