"""Fixtures shared by the whole test suite: local S3 and HTTP servers, and the real test data.

Every network fixture binds to 127.0.0.1 only, and nothing in the suite may contact any other
host. :func:`_offline_aws_environment` (automatic, whole session) replaces the AWS
configuration with fake credentials, disables the instance-metadata lookups, and points the
default S3 endpoint at a closed loopback port, so that an S3 call that forgot its
``endpoint_url`` fails on this machine instead of reaching AWS.

``s3_server``
    A moto S3 server for the session (``endpoint_url``, ``storage_options()``, ``client()``).
``s3_bucket``
    A fresh, empty bucket on it for one test: ``name, storage_options = s3_bucket``.
``http_server``
    A factory: ``base_url = http_server(directory)`` serves a directory over HTTP, with byte
    range support (zarr reads shard indexes with suffix ranges), until the test ends.
``shared_data``
    ``../shared/data`` beside the project, where the real test files live in CI.
``cluster_client``
    A ``dask.distributed`` client of a LocalCluster of two worker processes on 127.0.0.1
    (one per module that asks for it).
``s3_calls``
    The S3 operations a test made, recorded (operation name and parameters).

Fixtures only one folder uses live in that folder's ``conftest.py``; shared values and
classes in ``support.py``.

At the end of the session the network sessions of fsspec's cached filesystems are closed.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.server
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import (
    DEAD_ENDPOINT,
    FAKE_KEY,
    FAKE_REGION,
    FAKE_SECRET,
    SHARED_DATA,
    S3Bucket,
    S3Server,
    forget_cached_filesystems,
)

# Variables that could route a request to real AWS, or pull real credentials in.
_AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


@pytest.fixture(scope="session", autouse=True)
def _offline_aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake AWS credentials and configuration for the whole session; restored afterwards."""
    empty = tmp_path_factory.mktemp("aws") / "none"  # never created: no config, no credentials
    loopback = "127.0.0.1,localhost"
    with pytest.MonkeyPatch.context() as patch:
        for name in _AWS_VARIABLES_TO_CLEAR:
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        patch.setenv("AWS_DEFAULT_REGION", FAKE_REGION)
        patch.setenv("AWS_CONFIG_FILE", str(empty))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
        for name in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(name)
            patch.setenv(name, f"{current},{loopback}" if current else loopback)
        yield


@pytest.fixture(scope="session", autouse=True)
def _fixed_write_day() -> Iterator[None]:
    """One write day for the session: tests comparing two writes must not straddle midnight.

    A write records the UTC day it began (the RO-Crate's publication date); tests of the day
    itself set ``SOURCE_DATE_EPOCH`` again.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", "1780000000")
        yield


# --------------------------------------------------------------------------------------------
# S3 (moto)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start a moto S3 server on a free 127.0.0.1 port for the session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] is not installed: S3 tests need a local moto server on 127.0.0.1")
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[S3Bucket]:
    """Create a fresh, uniquely named, empty bucket; delete it and its objects afterwards."""
    client = s3_server.client()
    name = f"cellvol-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield S3Bucket(name, s3_server.storage_options())
    finally:
        with contextlib.suppress(client.exceptions.NoSuchBucket):  # a test may delete it
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 operation any aiobotocore client sends from now on, with its parameters.

    The calls still go to the moto server; this only watches them (``("GetObject",
    {"Bucket": ..., "Key": ..., "Range": ...})``).
    """
    from aiobotocore.client import AioBaseClient

    calls: list[tuple[str, dict[str, Any]]] = []
    send = AioBaseClient._make_api_call

    async def recorded(self: Any, operation: str, parameters: dict[str, Any]) -> Any:
        calls.append((operation, dict(parameters)))
        return await send(self, operation, parameters)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", recorded)
    return calls


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _QuietRangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``).

    The standard handler ignores ``Range`` and answers 200 with the whole file; fsspec then
    hands the whole file to zarr as if it were the range, which breaks sharded reads.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection is kept open
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK, some 40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True
    _remaining: int | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self) -> Any:
        self._remaining = None
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if header is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        match = _RANGE.match(header.strip())
        if match is None or match.groups() == ("", ""):
            return self._unsatisfiable(size)
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            return self._unsatisfiable(size)
        handle = path.open("rb")
        handle.seek(start)
        self.send_response(http.server.HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", email.utils.formatdate(path.stat().st_mtime, usegmt=True))
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = self._remaining
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        self._remaining = None
        while remaining > 0:
            block = source.read(min(remaining, 1 << 16))
            if not block:
                break
            outputfile.write(block)
            remaining -= len(block)

    def _unsatisfiable(self, size: int) -> None:
        self.send_response(http.server.HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()


@dataclass
class _Servers:
    running: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = field(
        default_factory=list
    )

    def serve(self, directory: str | os.PathLike[str]) -> str:
        root = Path(directory)
        if not root.is_dir():
            raise NotADirectoryError(f"cannot serve {root}: not a directory")
        handler = functools.partial(_QuietRangeHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="test-http",
            daemon=True,
        )
        thread.start()
        self.running.append((server, thread))
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        while self.running:
            server, thread = self.running.pop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture
def http_server() -> Iterator[Callable[[str | os.PathLike[str]], str]]:
    """Return ``serve_directory(path) -> base_url``: serve ``path`` on 127.0.0.1 for the test.

    Each call starts one ``ThreadingHTTPServer`` on a free port; files written under ``path``
    after the call are served too. All servers stop when the test ends.
    """
    servers = _Servers()
    try:
        yield servers.serve
    finally:
        servers.stop()


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    """A dask.distributed cluster of two worker processes on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return ``../shared/data`` beside the project; skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: the real test files live beside the project in CI")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _close_cached_filesystems() -> Iterator[None]:
    """At the end of the session, close the network sessions that fsspec's cache kept open."""
    yield
    forget_cached_filesystems()
