"""An S3 proxy on 127.0.0.1 that injects faults in front of a moto server, seeded.

Usage: python benchmarks/_fault_proxy.py UPSTREAM_URL [--rate 0.05] [--seed 0] [--fail-keys RE]
(prints ``port N`` once it listens). The tests run the same :class:`FaultProxy` in a thread
(``fault_proxy`` fixture in tests/_store/conftest.py); the benchmarks run it in a process of
its own, so that its Python work does not share an interpreter lock with the writer measured.

Each request is forwarded to the upstream server unless a fault is drawn for it. The kinds:

``500``           a 500 InternalError answer (S3's XML body); the request never reaches moto
``503``           a 503 SlowDown answer, as S3 throttles; never reaches moto
``reset``         the connection is reset before any answer; never reaches moto
``reset-body``    moto answers; the headers and part of the body are sent, then a reset
``short-body``    moto answers; the headers (with the full Content-Length) and part of the
                  body are sent, then the connection is closed cleanly
``lost-answer``   moto acts on the request (a PUT is stored), then the connection is reset
                  before any answer: the client cannot know that it succeeded
``delay``         the answer comes, whole and right, after ``delay`` seconds
``stall``         moto answers; the headers and part of the body are sent, then nothing more
                  for ``stall`` seconds (a hung connection: only the client's read timeout
                  ends it). Not in the default mix, which would then wait on timeouts.
``bad-digest``    a 400 BadDigest answer, as S3 refuses a body that no longer matches its
                  checksum (changed in transit); never reaches moto. Not in the default mix.

Whether a request fails, and how, is a function of the seed, the request (method, path and
query without the bucket's name, Range) and how many times that same request was seen
before, not of the order in which concurrent requests arrive: a run with the same requests
meets the same faults (into a bucket of any name), and a retry of a failed request draws
again. Requests whose path matches ``fail_keys`` (a regular
expression searched in the path) fail every time, with a kind from ``fail_kinds``; so do
requests matching ``fail_requests``, searched in ``METHOD /bucket/key?query`` (the part
uploads of a multipart upload, say: ``^PUT .*[?&]partNumber=``).

The traffic, counted apart from the faults: by method, ``GET requests``, ``GET bytes up``
(request bodies sent on) and ``GET bytes down`` (answer bodies relayed), and ``in-flight
peak``, the most requests in progress at once since the traffic was last taken.

Paths under ``/_faults/`` control the proxy and are neither counted nor forwarded:

- ``/_faults/counts``: the requests seen and the faults injected, by kind, as JSON;
- ``/_faults/traffic``: the requests and bytes by method since the last call, as JSON;
- ``/_faults/configure?rate=R&seed=S&fail_keys=RE&fail_requests=RE&kinds=a,b``: change the
  settings (only those given; an empty ``fail_keys`` or ``fail_requests`` clears it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

KINDS: Final = ("500", "503", "reset", "reset-body", "short-body", "lost-answer", "delay")
ALL_KINDS: Final = (*KINDS, "stall", "bad-digest")
CONTROL: Final = "/_faults/"
_ERROR_BODIES: Final = {
    "500": (
        "500 Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    "503": ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
    "bad-digest": (
        "400 Bad Request",
        "BadDigest",
        "The x-amz-checksum-sha256 you specified did not match the calculated checksum.",
    ),
}
_HEAD_LIMIT: Final = 64 * 1024
# Headers about one connection, not the message: the proxy speaks for itself on each side.
_HOP_BY_HOP: Final = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"expect"})


@dataclass
class FaultSettings:
    """What the proxy injects: a fault rate over ``kinds``, and keys that always fail."""

    rate: float = 0.0
    seed: int = 0
    kinds: Sequence[str] = KINDS
    fail_keys: str | None = None
    fail_requests: str | None = None
    fail_kinds: Sequence[str] = ("503", "500", "reset")
    delay: float = 0.2
    stall: float = 30.0

    def __post_init__(self) -> None:
        unknown = sorted((set(self.kinds) | set(self.fail_kinds)) - set(ALL_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}: expected some of {list(ALL_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate {self.rate} is not between 0 and 1")


@dataclass
class _Message:
    """An HTTP message as relayed: its first line, its headers, its body."""

    first: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    close: bool = False
    # An answer to HEAD keeps the Content-Length of the body it describes and never sends.
    bodiless: bool = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def head(self) -> bytes:
        """The first line and headers as relayed: hop-by-hop headers dropped, HTTP/1.1."""
        first = self.first
        if first.startswith(b"HTTP/1.0 "):
            first = b"HTTP/1.1 " + first[9:]
        elif first.endswith(b" HTTP/1.0"):
            first = first[:-9] + b" HTTP/1.1"
        lines = [first]
        for key, value in self.headers:
            if key.lower() in _HOP_BY_HOP or (
                key.lower() == b"content-length" and not self.bodiless
            ):
                continue
            lines.append(key + b": " + value)
        if not self.bodiless:
            lines.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class FaultProxy:
    """The proxy: ``start()`` in a background thread, ``url`` to reach it, ``stop()``."""

    upstream: str
    settings: FaultSettings = field(default_factory=FaultSettings)
    host: str = "127.0.0.1"
    port: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    traffic: Counter[str] = field(default_factory=Counter)
    _seen: Counter[tuple[bytes, ...]] = field(default_factory=Counter)
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **changes: object) -> None:
        """Change the settings (``rate=``, ``seed=``, ``fail_keys=``...) from now on."""
        current = self.settings.__dict__ | changes
        self.settings = FaultSettings(**current)  # type: ignore[arg-type]

    def take_counts(self) -> dict[str, int]:
        """The requests seen and faults injected since the last call, by kind."""
        with self._lock:
            counts = dict(self.counts)
            self.counts.clear()
        return counts

    def take_traffic(self) -> dict[str, int]:
        """Requests and bytes by method, and the in-flight peak, since the last call."""
        with self._lock:
            traffic = dict(self.traffic)
            self.traffic.clear()
        return traffic

    # Running.

    def start(self) -> FaultProxy:
        """Listen on ``host`` (a free port unless ``port`` is set) in a background thread."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port, backlog=512)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Listen and serve in the running loop (the script's way)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        print(f"port {self.port}", flush=True)
        async with self._server:
            await self._server.serve_forever()

    # One client connection: requests one after the other (HTTP/1.1 keep-alive).

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(reader, continuing=writer)
                if request is None:
                    return
                target = request.first.split(b" ")[1]
                if target.startswith(CONTROL.encode()):
                    await self._control(target.decode(), writer)
                    continue
                kind = self._draw(request, target)
                method = request.first.split(b" ")[0].decode()
                with self._lock:
                    self.counts["requests"] += 1
                    if kind is not None:
                        self.counts[kind] += 1
                    self.traffic[f"{method} requests"] += 1
                    self.traffic[f"{method} bytes up"] += len(request.body)
                    self._in_flight += 1
                    peak = self.traffic["in-flight peak"]
                    self.traffic["in-flight peak"] = max(peak, self._in_flight)
                try:
                    upstream, answered = await self._answer(request, target, kind, upstream, writer)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                if answered is None:
                    return
                with self._lock:
                    self.traffic[f"{method} bytes down"] += answered
                if request.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            # Stopping. Not re-raised: asyncio's stream callback in Python 3.12.1 reports a
            # cancelled connection task as an error.
            return
        finally:
            if upstream is not None:
                _close(upstream[1])
            _close(writer)

    async def _answer(
        self,
        request: _Message,
        target: bytes,
        kind: str | None,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
        writer: asyncio.StreamWriter,
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, int | None]:
        """Answer one request with ``kind`` of fault (None: none).

        Returns the upstream connection to keep, and the answer body's bytes sent or None
        when the fault closed the client's connection.
        """
        if kind in _ERROR_BODIES:
            writer.write(_error_answer(kind, target))
            await writer.drain()
            return upstream, 0
        if kind == "reset":
            _reset(writer)
            return upstream, None
        if kind == "delay":
            await asyncio.sleep(self.settings.delay)
        if upstream is None:
            upstream = await self._connect()
        try:
            answer = await _forward(request, *upstream)
        except (ConnectionError, asyncio.IncompleteReadError):
            # The upstream server closed a kept-alive connection: once more, afresh.
            _close(upstream[1])
            upstream = await self._connect()
            answer = await _forward(request, *upstream)
        if answer.close:
            _close(upstream[1])
            upstream = None
        if kind == "lost-answer":
            _reset(writer)
            return upstream, None
        if kind in ("reset-body", "short-body", "stall") and answer.body:
            writer.write(answer.head() + answer.body[: len(answer.body) // 2])
            await writer.drain()
            if kind == "stall":
                await asyncio.sleep(self.settings.stall)
            if kind == "reset-body":
                _reset(writer)
            else:
                writer.close()
            return upstream, None
        if kind in ("reset-body", "short-body", "stall"):
            # Nothing to cut short: cut the headers instead.
            head = answer.head()
            writer.write(head[: len(head) // 2])
            await writer.drain()
            if kind == "stall":
                await asyncio.sleep(self.settings.stall)
            _reset(writer)
            return upstream, None
        writer.write(answer.head() + answer.body)
        await writer.drain()
        return upstream, len(answer.body)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.upstream)
        return await asyncio.open_connection(parts.hostname, parts.port or 80)

    def _draw(self, request: _Message, target: bytes) -> str | None:
        """The fault for this request, or None: from the seed, the request and its repeats."""
        settings = self.settings
        method = request.first.split(b" ")[0]
        # Without the bucket (path-style URLs): a run into a fresh bucket meets the same faults.
        unbucketed = b"/" + target.lstrip(b"/").partition(b"/")[2]
        identity = (method, unbucketed, request.header(b"range") or b"")
        with self._lock:
            seen = self._seen[identity]
            self._seen[identity] += 1
        digest = hashlib.sha256(
            b"|".join([str(settings.seed).encode(), *identity, str(seen).encode()])
        ).digest()
        chance, pick = struct.unpack("<QQ", digest[:16])
        path = urlsplit(target.decode()).path
        if settings.fail_keys and re.search(settings.fail_keys, path):
            return settings.fail_kinds[pick % len(settings.fail_kinds)]
        if settings.fail_requests and re.search(
            settings.fail_requests, f"{method.decode()} {target.decode()}"
        ):
            return settings.fail_kinds[pick % len(settings.fail_kinds)]
        if chance / 2**64 < settings.rate:
            return settings.kinds[pick % len(settings.kinds)]
        return None

    async def _control(self, target: str, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(target)
        command = parts.path.removeprefix(CONTROL)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        status = "200 OK"
        reply: dict[str, object] = {}
        try:
            if command == "counts":
                reply = dict(self.take_counts())
            elif command == "traffic":
                reply = dict(self.take_traffic())
            elif command == "configure":
                changes: dict[str, object] = {}
                if "rate" in query:
                    changes["rate"] = float(query["rate"])
                if "seed" in query:
                    changes["seed"] = int(query["seed"])
                if "fail_keys" in query:
                    changes["fail_keys"] = query["fail_keys"] or None
                if "fail_requests" in query:
                    changes["fail_requests"] = query["fail_requests"] or None
                if "kinds" in query:
                    changes["kinds"] = tuple(query["kinds"].split(","))
                self.configure(**changes)
            else:
                status, reply = "404 Not Found", {"error": f"unknown command {command!r}"}
        except ValueError as exc:
            status, reply = "400 Bad Request", {"error": str(exc)}
        body = json.dumps(reply).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()


async def _read_message(
    reader: asyncio.StreamReader,
    *,
    continuing: asyncio.StreamWriter | None = None,
    bodiless: bool = False,
) -> _Message | None:
    """One message, body included (by Content-Length, chunked, or to the end).

    ``continuing``: a request is being read, and this is where its client waits for a
    ``100 Continue`` before it sends the body, if it asked for one. ``bodiless``: an answer
    to HEAD, whose Content-Length describes a body that is not sent.
    """
    request = continuing is not None
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None  # the other side closed between messages
        raise
    if len(head) > _HEAD_LIMIT:
        raise ConnectionError("headers too long")
    lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    message = _Message(lines[0], headers, bodiless=bodiless)
    if continuing is not None and (message.header(b"expect") or b"").lower() == b"100-continue":
        continuing.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await continuing.drain()
    connection = (message.header(b"connection") or b"").lower()
    message.close = connection == b"close" or lines[0].startswith(b"HTTP/1.0")
    length = message.header(b"content-length")
    if bodiless or (not request and _bodiless(lines[0])):
        pass
    elif (message.header(b"transfer-encoding") or b"").lower() == b"chunked":
        message.body = await _read_chunked(reader)
    elif length is not None:
        message.body = await reader.readexactly(int(length))
    elif not request:
        message.body = await reader.read()  # to the end of the connection
        message.close = True
    return message


def _bodiless(status_line: bytes) -> bool:
    code = status_line.split(b" ")[1]
    return code.startswith(b"1") or code in (b"204", b"304")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _forward(
    request: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _Message:
    writer.write(request.head() + request.body)
    await writer.drain()
    answer = await _read_message(reader, bodiless=request.first.startswith(b"HEAD "))
    if answer is None:
        raise ConnectionError("the upstream server closed the connection")
    return answer


def _error_answer(kind: str, target: bytes) -> bytes:
    status, code, text = _ERROR_BODIES[kind]
    resource = urlsplit(target.decode()).path
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{text}</Message>"
        f"<Resource>{resource}</Resource><RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), as a crashed server or a dropped link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("upstream", help="the S3 server to forward to, http://127.0.0.1:PORT")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-keys", default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host = urlsplit(args.upstream).hostname
    if host not in ("127.0.0.1", "localhost"):
        parser.error("the upstream must be on 127.0.0.1")
    settings = FaultSettings(rate=args.rate, seed=args.seed, fail_keys=args.fail_keys)
    proxy = FaultProxy(args.upstream, settings, port=args.port)
    asyncio.run(proxy.serve_forever())


if __name__ == "__main__":
    main()
