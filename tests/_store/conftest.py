"""Fixtures of the store layer's tests.

``clean_fsspec_cache``
    For tests that change the AWS environment: fsspec's cached filesystems are closed and
    forgotten before and after the test (they would keep the old configuration).
``fault_proxy``
    The fault-injecting S3 proxy of ``benchmarks/_fault_proxy.py`` in front of the session's
    moto server, for one test.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import S3Server, forget_cached_filesystems


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


# --------------------------------------------------------------------------------------------
# The fault-injecting S3 proxy (benchmarks/_fault_proxy.py, which the benchmarks run too)
# --------------------------------------------------------------------------------------------

_PROXY_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "_fault_proxy.py"


def _proxy_module() -> Any:
    """benchmarks/_fault_proxy.py as a module: one implementation for tests and benchmarks."""
    name = "cellvol_fault_proxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PROXY_SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being made
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[Any]:
    """A :class:`FaultProxy` on 127.0.0.1 in front of the session's moto server, no faults yet.

    ``fault_proxy.configure(rate=..., seed=..., kinds=..., fail_keys=...)`` sets what it
    injects, ``fault_proxy.take_counts()`` tells what it did, ``fault_proxy.take_traffic()`` the
    requests and bytes by method, and ``fault_proxy.url`` is the
    endpoint to give as ``endpoint_url``. Buckets are the moto server's (``s3_bucket``).
    """
    module = _proxy_module()
    with module.FaultProxy(s3_server.endpoint_url, module.FaultSettings(delay=0.05)) as proxy:
        yield proxy
