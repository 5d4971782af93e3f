"""The pyramid tasks' bookkeeping of records that wait for their shard's sync."""

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from cellvol.write._tasks import SyncingRecords


def _finished(error: Exception | None = None) -> Future[None]:
    future: Future[None] = Future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    return future


def test_finished_records_are_dropped_and_their_failures_raised() -> None:
    syncing = SyncingRecords()
    running: Future[None] = Future()
    syncing.add([_finished(), running, _finished()])
    syncing.drop_finished()  # the running one stays, nothing failed
    syncing.add([_finished(OSError("disk full"))])
    with pytest.raises(OSError, match="disk full"):
        syncing.drop_finished()
    running.set_result(None)
    syncing.wait()


def test_wait_waits_for_every_record_and_can_stay_quiet() -> None:
    syncing = SyncingRecords()
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(release.wait, 5)
        syncing.add([slow, _finished(OSError("bad sector"))])
        threading.Timer(0.05, release.set).start()
        syncing.wait(reraise=False)  # on a failing stage: wait, keep the first error
        assert slow.done()
    syncing.add([_finished(OSError("bad sector"))])
    with pytest.raises(OSError, match="bad sector"):
        syncing.wait()
