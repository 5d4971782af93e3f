"""Event loops: running a coroutine to completion from synchronous code, or on zarr's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zarr.core.sync import _get_loop

__all__ = ["on_zarr_loop", "run_in_fresh_loop"]


def run_in_fresh_loop[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a probe to completion in a fresh event loop, even when called from inside one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellvol-probe") as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def on_zarr_loop[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Await ``coroutine`` on zarr's I/O loop from any other running loop.

    Stores opened through zarr (an s3fs session above all) belong to zarr's loop; a server
    running its own loop hands the work over and awaits the result without blocking.
    """
    loop = _get_loop()  # zarr's own loop thread; private, but the one its stores use
    if asyncio.get_running_loop() is loop:
        return await coroutine
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))
