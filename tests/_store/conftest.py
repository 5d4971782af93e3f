"""Fixtures of the store layer's tests.

``clean_fsspec_cache``
    For tests that change the AWS environment: fsspec's cached filesystems are closed and
    forgotten before and after the test (they would keep the old configuration).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import forget_cached_filesystems


@pytest.fixture
def clean_fsspec_cache() -> Iterator[None]:
    """Forget cached fsspec filesystems before and after a test that changes the environment.

    fsspec caches filesystem instances by their arguments only, so a test that changes
    ``AWS_ENDPOINT_URL`` or credentials in the environment would otherwise get an instance
    configured by an earlier test.
    """
    forget_cached_filesystems()
    yield
    forget_cached_filesystems()
