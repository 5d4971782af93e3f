"""Run the app with uvicorn: in the foreground (the CLI) or on a background thread."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import uvicorn

from cellvol.errors import AddressInUseError, InvalidInputError
from cellvol.server._app import Served, create_app, serve_name
from cellvol.server._guard import ConnectionGuard, guarded_protocol
from cellvol.server._scenes import ServedScene, is_scene

__all__ = ["Server"]


class Server:
    """A uvicorn server for some volumes, bound to ``host:port`` (port 0: any free port).

    Parameters
    ----------
    sources
        Paths or URLs of images or scenes (``cellvol link``; each image of a scene is served
        as ``SCENE-IMAGE``), each optionally ``NAME=PATH``, or :class:`Served` objects.
    host, port
        Where to listen; the default host accepts connections from this machine only.
    storage_options
        Passed to every store (for S3: ``endpoint_url``, ``key``/``secret``...).
    max_concurrency, timeout
        Rendering requests handled at once (more wait, up to ``timeout``, then get 503), and
        seconds each may take (then 504). Raw keys and the catalog are not limited: they cost
        a file read.
    max_connections
        Connections open at once, all clients together; one more is answered 503 and closed.
        Lowered, if need be, to what the process's open-file limit leaves room for.
    max_connections_per_client
        Connections one client (an IPv4 address, an IPv6 /64) may hold at once; beyond, 503
        and closed. The default is above what browsers (6) and Python's HTTP pools (100)
        open. 0: no such cap, for a server behind a reverse proxy, where every connection
        comes from the proxy's address (let the proxy cap its clients).
    header_timeout
        Seconds a connection has to send a complete request head: of connecting, for its
        first request, or of the head's first byte after that. Then it is closed, so that
        connections left half-open cannot pile up.
    idle_timeout
        Seconds a kept-alive connection may wait, idle, for its next request.

    Raises
    ------
    AddressInUseError
        If another program listens on ``host:port`` already.
    InvalidInputError
        If a limit or timeout is not positive.
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
        max_connections: int = 2048,
        max_connections_per_client: int = 128,
        header_timeout: float = 10.0,
        idle_timeout: float = 5.0,
    ) -> None:
        if not sources:
            raise InvalidInputError("name at least one image to serve")
        _positive(
            max_concurrency=max_concurrency,
            timeout=timeout,
            max_connections=max_connections,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
        )
        if max_connections_per_client < 0:
            raise InvalidInputError(
                f"max_connections_per_client must be 0 (no cap) or more, "
                f"got {max_connections_per_client}"
            )
        served: list[Served] = []
        scenes: list[ServedScene] = []
        for source in sources:
            if isinstance(source, Served):
                served.append(source)
                continue
            path, name = _named(str(source))
            if not is_scene(path, storage_options):
                served.append(Served.open(path, name, storage_options))
                continue
            # A scene: each of its images is served too, as SCENE-IMAGE.
            scene = ServedScene.open(path, name or serve_name(path), storage_options)
            scenes.append(scene)
            for image, as_name in scene.served.items():
                served.append(Served.open(scene.scene[image].url, as_name, storage_options))
        self.app = create_app(
            served, max_concurrency=max_concurrency, timeout=timeout, scenes=scenes
        )
        self._socket = _listening_socket(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        self.guard = ConnectionGuard(
            _connection_budget(max_connections), max_connections_per_client, header_timeout
        )
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            # Not uvicorn's limit_concurrency: it counts sockets, half-open ones included, and
            # answers 503 to every client once they fill it. The guard caps connections and
            # times out their heads; the app bounds the work.
            http=guarded_protocol(self.guard),
            limit_concurrency=None,
            timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # a float works
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


def _positive(**limits: float) -> None:
    for name, value in limits.items():
        if not value > 0:  # NaN too
            raise InvalidInputError(f"{name} must be positive, got {value}")


_FILES_RESERVE: Final = 256
"""File descriptors kept for what is not a connection: shards being read, logs, the loop."""


def _connection_budget(wanted: int) -> int:
    """``wanted`` connections, or as many as the open-file limit leaves room for.

    A server that runs out of descriptors fails to open shards, not just to accept: the soft
    limit is raised towards the hard one if need be, and the cap lowered to what fits.
    """
    if os.name != "posix":
        return wanted
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _FILES_RESERVE
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < raised:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - _FILES_RESERVE))


def _named(text: str) -> tuple[str, str | None]:
    """``NAME=PATH`` to (PATH, NAME); a plain path or URL to (it, None)."""
    name, sep, rest = text.partition("=")
    if sep and "://" not in name and "/" not in name and name and rest:
        return rest, name
    return text, None
