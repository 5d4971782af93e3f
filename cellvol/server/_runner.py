"""Run the app with uvicorn: in the foreground (the CLI) or on a background thread."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from cellvol.errors import AddressInUseError, InvalidInputError
from cellvol.server._app import Served, create_app

__all__ = ["Server"]


class Server:
    """A uvicorn server for some volumes, bound to ``host:port`` (port 0: any free port).

    Parameters
    ----------
    sources
        Paths or URLs of images, each optionally ``NAME=PATH``, or :class:`Served` objects.
    host, port
        Where to listen; the default host accepts connections from this machine only.
    storage_options
        Passed to every store (for S3: ``endpoint_url``, ``key``/``secret``...).
    max_concurrency, timeout
        Rendering requests handled at once, and seconds each may take.
    max_connections
        Open connections beyond this are answered 503 by uvicorn.

    Raises
    ------
    AddressInUseError
        If another program listens on ``host:port`` already.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str] | Served],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_options: Mapping[str, Any] | None = None,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        if not sources:
            raise InvalidInputError("name at least one image to serve")
        served = [
            s if isinstance(s, Served) else Served.open(*_named(str(s)), storage_options)
            for s in sources
        ]
        self.app = create_app(served, max_concurrency=max_concurrency, timeout=timeout)
        self._socket = _listening_socket(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            limit_concurrency=max_connections,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL, ending in ``/``."""
        return f"http://{self.host}:{self.port}/"

    def run(self) -> None:
        """Serve in this thread until interrupted."""
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self, wait: float = 10.0) -> str:
        """Serve on a background thread; returns :attr:`url` once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="cellvol-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` whose connections send small replies at once.

    ``socket.create_server`` makes a socket of protocol 0, and asyncio only turns Nagle's
    algorithm off (TCP_NODELAY) on connections of a socket it knows is TCP. Left on, every
    small reply (a shard index, a JSON document) waits for the client's delayed ACK (tens of
    milliseconds on Linux). So the socket is made with protocol TCP,
    and the option is also set on it, which Linux passes to the connections it accepts.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # as create_server does: restart without waiting for TIME_WAIT
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(address)
        listener.listen()
    except OSError as exc:
        listener.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUseError(
            f"cannot listen on {host}:{port}: the address is in use by another program",
            hint=f"choose another port with {{port={port + 1}}}, or {{port=0}} for any free one",
        ) from None
    except BaseException:
        listener.close()
        raise
    return listener


def _named(text: str) -> tuple[str, str | None]:
    """``NAME=PATH`` to (PATH, NAME); a plain path or URL to (it, None)."""
    name, sep, rest = text.partition("=")
    if sep and "://" not in name and "/" not in name and name and rest:
        return rest, name
    return text, None
