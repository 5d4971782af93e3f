"""A moto S3 server on 127.0.0.1 that counts and logs the requests it answers.

Usage: python benchmarks/_moto_server.py [SPILL-DIR]   (prints ``port N`` once it listens)

It runs in a process of its own, as a real object store would: in the benchmark's process,
moto's Python request handling would share one interpreter lock with the Python readers being
measured (and not with tensorstore's C++ threads), which slowed the Python readers most.

It keeps connections open between requests, as S3 does. moto's own server (werkzeug's) closes
the connection after every response, so each request paid a new TCP connection: a cost a
real store does not impose, and one that weighs more on Python clients (aiohttp sets up and
tears down each connection on the event loop that also parses every reply). cheroot, a
threaded WSGI server with HTTP/1.1 keep-alive, serves moto's application instead.

It keeps every object's bytes in a temporary file (under SPILL-DIR if given, else the
system's temporary directory), not in its memory, and its request buffers in one malloc
arena: see :func:`spill_to_disk`.

Paths under ``/_bench/`` control the counter and are neither counted nor logged:

- ``/_bench/reset``: the requests (also by method: ``PUT``, ``PUT part``, ``POST``...) and
  response body bytes since the last reset, as JSON, and the counts start again from zero;
- ``/_bench/start-log``: from now on, log each request (method, path with query, Range);
- ``/_bench/take-log``: the logged requests as JSON; logging stops.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from cellvol.write._allocator import limit_malloc_arenas

CONTROL = "/_bench/"
# Requests answered at once: a plane of small chunks asks for about 30 at a time.
THREADS = 40
KEEP_ALIVE_CONNECTIONS = 512
LISTEN_BACKLOG = 512


class Counter:
    """WSGI middleware that counts requests and response body bytes, and can log requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0
        self.bytes = 0
        self.methods: dict[str, int] = {}
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str | None]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ["PATH_INFO"]
        if path.startswith(CONTROL):
            return self.control(path.removeprefix(CONTROL), start_response)
        query = environ.get("QUERY_STRING")
        method = environ["REQUEST_METHOD"] + (" part" if "partNumber=" in (query or "") else "")
        with self.lock:
            self.requests += 1
            self.methods[method] = self.methods.get(method, 0) + 1
            if self.log is not None:
                full = path + (f"?{query}" if query else "")
                self.log.append((environ["REQUEST_METHOD"], full, environ.get("HTTP_RANGE")))
        return self.counted(self.app(environ, start_response))

    def counted(self, body: Any) -> Iterator[bytes]:
        try:
            for chunk in body:
                with self.lock:
                    self.bytes += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()

    def control(self, command: str, start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            if command == "reset":
                reply: Any = {"requests": self.requests, "bytes": self.bytes}
                reply["by_method"], self.methods = self.methods, {}
                self.requests = self.bytes = 0
            elif command == "start-log":
                self.log, reply = [], {}
            elif command == "take-log":
                reply, self.log = self.log or [], None
            else:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [f"unknown control command {command!r}".encode()]
        body = json.dumps(reply).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def spill_to_disk(directory: str | None) -> None:
    """Make moto keep each object's bytes in a temporary file in ``directory``, not in RAM.

    moto holds an object's value in a SpooledTemporaryFile that moves to disk only past
    ``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`` bytes (5 MiB by default), so every smaller object
    (coarse levels' and sparse shards, metadata) stays in its memory: a 16 GiB write did not
    fit. A limit of one byte sends every value to a file. The setting is read as each object
    is made, so it must be in the environment before the first request. ``directory`` must be
    on a disk (not a tmpfs such as /dev/shm, which is memory again).
    """
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = "1"
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
        tempfile.tempdir = directory
    # One open (deleted) file per stored object and part: allow as many as the system does.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    spill_to_disk(sys.argv[1] if len(sys.argv) > 1 else None)
    # Each request's body passes through a few copies of its size, and each thread's arena kept
    # its own freed ones: with every object on disk, those held most of moto's memory.
    limit_malloc_arenas(1)  # before the server's threads start
    from cheroot.wsgi import Server
    from moto.server import DomainDispatcherApplication, create_backend_app

    counter = Counter(DomainDispatcherApplication(create_backend_app))
    # cheroot's listen backlog is 5 by default: a client that opens dozens of connections at
    # once has the rest of its SYNs dropped, and each of those waits a second to try again.
    server = Server(
        ("127.0.0.1", 0), counter, numthreads=THREADS, request_queue_size=LISTEN_BACKLOG
    )
    # cheroot closes every connection past its keep-alive limit (10 by default): the upload's
    # idle connections alone would use it up.
    server.keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS
    server.prepare()
    print(f"port {server.bind_addr[1]}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
