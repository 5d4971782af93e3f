"""One writer at a time: a lease on a store, taken before a write and held until it ends.

Two writers that start together on one destination would otherwise interleave their shards and
both report success. The lease is one object in the store, and each backend makes taking it
atomic:

- **Local disk**: an exclusive ``flock`` on the lease file, held open for the whole write. The
  kernel drops it when the process ends, however it ends, so a write killed mid-way leaves no
  stale lease to clear and ``resume`` simply takes it. The holder writes who it is into the
  file, for the message a second writer gets.
- **S3**: the lease object is created with a conditional PUT (``If-None-Match: *``), which S3
  lets only one writer win. A background thread renews it every ``ttl / 4`` seconds with
  ``If-Match`` on the last ETag, so a writer learns when someone else has taken it. Nothing
  drops a lease whose writer was killed: a lease not renewed for ``ttl`` seconds is taken over
  by a ``resume``, and any lease by an explicit ``break_lease``, each again by a conditional PUT
  so that two writers taking over together cannot both win.

Other stores (HTTP) are read-only and take no lease.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from cellvol.errors import ReadOnlyStoreError, WriteConflictError

__all__ = ["LEASE_TTL", "StoreLease", "take_lease"]

LEASE_TTL: Final = 120.0
"""Seconds after its last renewal at which an S3 lease counts as abandoned."""


class StoreLease:
    """A held lease; :meth:`release` (or leaving its ``with`` block) gives it up."""

    key: str
    url: str

    def check(self) -> None:
        """Raise unless the lease is still this writer's (before marking a write complete).

        Raises
        ------
        WriteConflictError
            Naming the writer that took it over.
        """

    def release(self) -> None:
        """Give the lease up; idempotent."""

    def __enter__(self) -> StoreLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def take_lease(
    store: Store,
    url: str,
    key: str,
    *,
    resume: bool = False,
    break_lease: bool = False,
    ttl: float = LEASE_TTL,
) -> StoreLease:
    """Take the lease ``key`` of ``store``, or raise naming the writer that holds it.

    Parameters
    ----------
    store, url
        The destination's store and its location, for messages.
    key
        The lease object's key.
    resume
        The caller resumes an interrupted write: on S3 a lease not renewed for ``ttl`` seconds
        is taken over (a killed writer's). A local lease of a killed writer is free anyway.
    break_lease
        Take the lease whatever its state: for an S3 writer known to be gone within ``ttl``.
    ttl
        Seconds without renewal after which an S3 lease counts as abandoned.

    Raises
    ------
    WriteConflictError
        If another writer holds the lease.
    """
    if isinstance(store, LocalStore):
        return _LocalLease(Path(store.root) / key, url, key)
    if isinstance(store, FsspecStore):
        return _ObjectLease.take(store, url, key, resume=resume, breaking=break_lease, ttl=ttl)
    return StoreLease()


def _holder() -> dict[str, Any]:
    return {
        "token": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
    }


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, int | float)
        else "an unknown time"
    )
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}"


class _LocalLease(StoreLease):
    """An exclusive ``flock`` on a file in the store, held by an open descriptor."""

    def __init__(self, path: Path, url: str, key: str) -> None:
        import fcntl

        self.url, self.key = url, key
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise ReadOnlyStoreError(
                        f"{url} cannot be written: its write lease {path} cannot be created "
                        f"({exc.strerror})"
                    ) from exc
                raise
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(descriptor)
                if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise WriteConflictError(
                        f"{url}: the file system does not support the lock ({path}: "
                        f"{exc.strerror}) that keeps two writers apart",
                        hint="mount it with flock support (NFSv4; Lustre with -o flock), or "
                        "write to a local disk or to S3",
                    ) from exc
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise WriteConflictError(
                    f"{url} is being written by another writer ({_read_holder(path)})",
                    hint="wait for it to finish, or write elsewhere",
                ) from None
            # The file may have been replaced between open and lock (an overwrite that
            # removed it): then the lock guards nothing, and the new file is tried instead.
            try:
                same = os.stat(path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        self._descriptor: int | None = descriptor
        self._path = path
        record = json.dumps(_holder()).encode()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record, 0)

    def release(self) -> None:
        if self._descriptor is not None:
            # The file stays, emptied: removing it would let a writer that opened it before the
            # removal lock the old file while another locks a new one; emptied, it is the same
            # after every write, so two writes of one image leave the same bytes.
            os.ftruncate(self._descriptor, 0)
            os.close(self._descriptor)
            self._descriptor = None


def _read_holder(path: Path) -> str:
    try:
        return _describe(json.loads(path.read_bytes()))
    except (OSError, ValueError, TypeError, AttributeError):
        return "holder unknown"


class _ObjectLease(StoreLease):
    """A lease object on S3, taken and renewed by conditional PUTs."""

    def __init__(self, store: FsspecStore, url: str, key: str, ttl: float) -> None:
        self.url, self.key, self.ttl = url, key, ttl
        self._fs = store.fs
        self._path = f"{store.path.rstrip('/')}/{key}"
        self._bucket, self._object = self._path.split("/", 1)
        self._holder = _holder()
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    @classmethod
    def take(
        cls,
        store: FsspecStore,
        url: str,
        key: str,
        *,
        resume: bool,
        breaking: bool,
        ttl: float,
    ) -> _ObjectLease:
        lease = cls(store, url, key, ttl)
        if lease._put(create=True):
            lease._start_renewing()
            return lease
        current = lease._current()
        if current is None:  # released between our PUT and our look: try once more
            if lease._put(create=True):
                lease._start_renewing()
                return lease
            current = lease._current()
        if current is not None:
            holder, etag, age = current
            if holder.get("token") == lease._holder["token"]:
                # Ours: the PUT succeeded and its reply was lost, then its retry found it.
                lease._etag = etag
                lease._start_renewing()
                return lease
            abandoned = age > ttl
            takes_over = breaking or (resume and abandoned) or holder.get("token") is None
            if takes_over and (lease._put(match=etag) or lease._is_ours()):
                lease._start_renewing()
                return lease
            if abandoned:
                raise WriteConflictError(
                    f"{url} is held by a writer that has not renewed its lease for {age:.0f} s "
                    f"({_describe(holder)}), so it has probably stopped",
                    hint="resume the write with {resume=True} to take it over",
                )
            raise WriteConflictError(
                f"{url} is being written by another writer ({_describe(holder)})",
                hint="wait for it to finish; if that writer is gone, break the lease with "
                "{break_lease=True}",
            )
        raise WriteConflictError(f"{url}: could not take the write lease {key}; try again")

    def _is_ours(self) -> bool:
        """Whether the stored lease holds our token (a PUT whose answer was lost landed).

        A takeover's conditional PUT that succeeded, lost its answer and was retried meets
        its own lease: a failed condition (412) though the lease is now ours.
        """
        current = self._current()
        if current is None or current[0].get("token") != self._holder["token"]:
            return False
        self._etag = current[1]
        return True

    def _body(self) -> bytes:
        return json.dumps({**self._holder, "renewed": time.time(), "ttl": self.ttl}).encode()

    def _put(self, *, create: bool = False, match: str | None = None) -> bool:
        """One conditional PUT of the lease; False if its condition failed."""
        condition = {"IfNoneMatch": "*"} if create else {"IfMatch": match}
        try:
            reply = sync(
                self._fs._call_s3(
                    "put_object",
                    Bucket=self._bucket,
                    Key=self._object,
                    Body=self._body(),
                    **condition,
                )
            )
        except Exception as exc:
            if _precondition_failed(exc):
                return False
            raise
        self._fs.invalidate_cache(self._path)
        self._etag = reply.get("ETag")
        return True

    def _current(self) -> tuple[dict[str, Any], str, float] | None:
        """The lease as stored: its holder, its ETag and seconds since it was written."""
        try:
            reply, body = sync(self._get())
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(body)
        except ValueError:
            holder = {}
        # Both times from S3's clock (its reply's Date), not this machine's, which may differ.
        written = reply.get("LastModified")
        said = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(said).timestamp() if said else time.time()
        age = now - written.timestamp() if written is not None else float("inf")
        return (holder if isinstance(holder, dict) else {}), reply["ETag"], age

    async def _get(self) -> tuple[dict[str, Any], bytes]:
        """The lease object's answer and body; whole, or retried, where the store can."""
        whole = getattr(self._fs, "get_object", None)
        if whole is not None:  # cellvol's S3 filesystem, which re-fetches a broken body
            reply, body = await whole(Bucket=self._bucket, Key=self._object)
            return reply, body
        reply = await self._fs._call_s3("get_object", Bucket=self._bucket, Key=self._object)
        async with reply["Body"] as stream:
            data: bytes = await stream.read()
        return reply, data

    def _start_renewing(self) -> None:
        self._renewer = threading.Thread(
            target=self._renew_until_stopped, name="cellvol-lease", daemon=True
        )
        self._renewer.start()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self._renew()

    def _renew(self) -> None:
        with self._lock:
            if self._lost is not None or self._etag is None:
                return
            try:
                if not self._put(match=self._etag):
                    current = self._current()
                    if current is not None and current[0].get("token") == self._holder["token"]:
                        self._etag = current[1]  # our own renewal, whose reply was lost
                        return
                    self._lost = _describe(current[0]) if current else "nobody (it was removed)"
            except Exception:  # a passing fault: the next renewal tries again
                return

    def check(self) -> None:
        self._renew()
        if self._lost is not None:
            raise WriteConflictError(
                f"{self.url}: another writer took this write's lease over ({self._lost}); "
                "this write stopped before marking the image complete"
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
            self._renewer = None
        with self._lock:
            if self._lost is None and self._etag is not None:
                # Best effort, and never in place of the write's own outcome: a lease left
                # behind is taken over by a resume once stale.
                with contextlib.suppress(Exception):
                    current = self._current()
                    if current is not None and current[1] == self._etag:
                        sync(self._fs._rm_file(self._path))
                self._etag = None


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an S3 error says a PUT's condition did not hold (or raced another's).

    s3fs turns S3's 412 into ``FileExistsError``; the original error, where kept, is looked at
    for the codes S3 uses (412, and 409 for two conditional writes at once).
    """
    if isinstance(exc, FileExistsError):
        return True
    for error in (exc, exc.__cause__, exc.__context__):
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return True
    return False
