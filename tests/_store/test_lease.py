"""One writer at a time: the store lease on local disk and on S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from cellvol._store import open_store, read_bytes
from cellvol._store._lease import take_lease
from cellvol.errors import WriteConflictError

KEY = "_cellvol/lease.json"


def test_a_local_lease_is_refused_while_held_and_free_after(tmp_path) -> None:
    store = open_store(str(tmp_path / "img"), mode="a")
    with (
        take_lease(store, "img", KEY),
        pytest.raises(WriteConflictError, match=r"another writer \(process \d+ on "),
    ):
        take_lease(store, "img", KEY)
    with take_lease(store, "img", KEY):  # released: free again
        pass


def _hold_then_die(path: str, ready) -> None:  # type: ignore[no-untyped-def]
    import os

    store = open_store(path, mode="a")
    take_lease(store, path, KEY)
    ready.set()
    time.sleep(0.2)
    os._exit(9)  # no clean-up, as a kill -9


def test_a_killed_local_writer_leaves_its_lease_free(tmp_path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    path = str(tmp_path / "img")
    child = context.Process(target=_hold_then_die, args=(path, ready))
    child.start()
    assert ready.wait(60)
    with pytest.raises(WriteConflictError):
        take_lease(open_store(path, mode="a"), path, KEY)
    child.join(60)
    with take_lease(open_store(path, mode="a"), path, KEY):
        pass


def test_an_s3_lease_is_exclusive_and_released(s3_bucket) -> None:
    url = s3_bucket.url("img")
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    first = take_lease(store, url, KEY)
    with pytest.raises(WriteConflictError, match="break the lease"):
        take_lease(store, url, KEY)
    with pytest.raises(WriteConflictError, match="break the lease"):
        take_lease(store, url, KEY, resume=True)  # fresh: a resume does not take it
    first.check()
    first.release()
    with take_lease(store, url, KEY):
        pass


def test_an_abandoned_s3_lease_is_taken_over_by_a_resume_only(s3_bucket) -> None:
    url = s3_bucket.url("img")
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    dead = take_lease(store, url, KEY, ttl=1.0)
    dead._stop.set()  # type: ignore[attr-defined]  # the writer was killed: no more renewals
    time.sleep(2.5)  # S3 gives times to the second
    with pytest.raises(WriteConflictError, match="with resume=True to take it over"):
        take_lease(store, url, KEY, ttl=1.0)
    with (
        take_lease(store, url, KEY, resume=True, ttl=1.0),
        pytest.raises(WriteConflictError, match="took this write's lease over"),
    ):
        dead.check()


def test_breaking_an_s3_lease_is_explicit_and_the_old_holder_learns_it(s3_bucket) -> None:
    url = s3_bucket.url("img")
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    old = take_lease(store, url, KEY)
    new = take_lease(store, url, KEY, break_lease=True)
    with pytest.raises(WriteConflictError, match="took this write's lease over"):
        old.check()
    old.release()  # must not remove the new holder's lease
    body = json.loads(read_bytes(store, KEY) or b"{}")
    assert body["token"] == new._holder["token"]  # type: ignore[attr-defined]
    new.check()
    new.release()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_emptying_a_store_spares_its_lease(where, tmp_path, request) -> None:
    from cellvol._store import delete_all_but, list_keys, write_bytes

    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store = open_store(bucket.url("img"), mode="a", storage_options=bucket.storage_options)
    else:
        store = open_store(str(tmp_path / "img"), mode="a")
    for key in ("zarr.json", "0/c/0/0/0", "_cellvol/job.json", "_cellvol/done/0/0.0.0@9", KEY):
        write_bytes(store, key, b"x")
    delete_all_but(store, KEY)
    assert list_keys(store, "") == [KEY]


def test_a_lease_whose_creation_reply_was_lost_is_still_ours(s3_bucket, monkeypatch) -> None:
    from cellvol._store import _lease

    url = s3_bucket.url("img")
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    real_put = _lease._ObjectLease._put
    lost = {"first": True}

    def put(self, *, create=False, match=None):  # type: ignore[no-untyped-def]
        succeeded = real_put(self, create=create, match=match)
        if create and lost.pop("first", False):
            return False  # the PUT landed, its reply did not: the retry met our own lease
        return succeeded

    monkeypatch.setattr(_lease._ObjectLease, "_put", put)
    with take_lease(store, url, KEY) as lease:
        lease.check()  # renews: still ours


def test_a_file_system_without_flock_is_named(tmp_path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(WriteConflictError, match="does not support the lock") as caught:
        take_lease(open_store(str(tmp_path / "img"), mode="a"), "img", KEY)
    assert "flock" in (caught.value.hint or "")


def test_a_takeover_whose_reply_was_lost_is_still_ours(s3_bucket, monkeypatch) -> None:
    from cellvol._store import _lease

    url = s3_bucket.url("img")
    store = open_store(url, mode="a", storage_options=s3_bucket.storage_options)
    old = take_lease(store, url, KEY)
    real_put = _lease._ObjectLease._put
    lost = {"first": True}

    def put(self, *, create=False, match=None):  # type: ignore[no-untyped-def]
        succeeded = real_put(self, create=create, match=match)
        if match is not None and succeeded and lost.pop("first", False):
            return False  # the takeover landed, its reply did not: the retry got a 412
        return succeeded

    monkeypatch.setattr(_lease._ObjectLease, "_put", put)
    with take_lease(store, url, KEY, break_lease=True) as new:
        new.check()  # renews: ours
        with pytest.raises(WriteConflictError, match="took this write's lease over"):
            old.check()
    old.release()
