"""Connections that cannot starve the server: head deadlines, per-client and global caps.

uvicorn's own guard, ``limit_concurrency``, counts open connections and answers 503 beyond
it, so a few hundred clients that open a connection and never finish their request head shut
everyone else out; and uvicorn times out only idle kept-alive connections, never a request
head still arriving. Here, instead:

- a connection must deliver each request head within ``header_timeout`` seconds: of
  connecting, for the first, or of the head's first byte on a kept-alive connection (whose
  wait before it is uvicorn's ``timeout_keep_alive``). A head trickled a byte at a time is cut
  off all the same;
- one client (an IPv4 address, or an IPv6 /64 network, which one host is usually given)
  holds at most ``per_client`` connections, and the server ``total``. A connection beyond
  either is answered 503 and closed at once, so it costs no more than its accept;
- work is limited where it is done: the app's ``max_concurrency`` bounds rendering, not
  sockets.

Memory stays bounded: at most ``total`` connections, each buffering at most h11's incomplete
event size (16 KiB) of an unfinished head, and at most one request in flight.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from typing import ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionGuard", "client_key", "guarded_protocol"]

_LOG = logging.getLogger("cellvol.server")
_REPORTED = frozenset(10**n for n in range(9))
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\nconnection: close\r\ncontent-length: 30\r\n\r\n"
    b"too many connections; retry.\r\n"
)


def client_key(address: str) -> str:
    """What one client is, for the per-client cap: its IPv4 address, or its IPv6 /64 network.

    An IPv6 host is commonly handed a whole /64, so counting single addresses would let it
    open as many connections as it likes.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a Unix socket's path, say: one client
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectionGuard:
    """The open connections of one server, counted overall and per client.

    Parameters
    ----------
    total
        Connections open at once, all clients together.
    per_client
        Connections one client (see :func:`client_key`) may hold; 0 for no such cap.
    header_timeout
        Seconds a connection has to deliver a request head.
    """

    def __init__(self, total: int, per_client: int, header_timeout: float) -> None:
        self.total = total
        self.per_client = per_client
        self.header_timeout = header_timeout
        self.open: Counter[str] = Counter()
        self.count = 0
        self.refused = 0

    def admit(self, client: str) -> bool:
        """Count a new connection from ``client`` if the caps allow it; False if not."""
        if self.count >= self.total or (self.per_client and self.open[client] >= self.per_client):
            self.refused += 1
            if self.refused in _REPORTED:  # under attack: a few lines, not one per connection
                _LOG.warning("refused %d connection(s) so far: too many open", self.refused)
            return False
        self.open[client] += 1
        self.count += 1
        return True

    def release(self, client: str) -> None:
        """Forget a connection :meth:`admit` counted."""
        self.count -= 1
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)``: uvicorn's h11, held to ``guard``."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"guard": guard})


class _GuardedH11Protocol(H11Protocol):
    """One connection: admitted by the guard, and closed when its request head is overdue."""

    guard: ClassVar[ConnectionGuard]
    _client_key: str | None = None
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        key = client_key(self.client[0]) if self.client else ""
        if not self.guard.admit(key):
            transport.write(_REFUSED)
            transport.close()
            return
        self._client_key = key
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self._client_key is not None:
            self.guard.release(self._client_key)
            self._client_key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn cancels its keep-alive timer on any byte and arms it again only once a
        # response is sent: from here to a complete head, only our deadline is running.
        super().data_received(data)
        if self._waiting_for_head():
            self._arm_head_deadline()
        else:
            self._disarm_head_deadline()

    def _waiting_for_head(self) -> bool:
        """No request in progress: the next step is the client's (uvicorn's state, read only)."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        # Armed once per head: later bytes of the same head do not push the deadline back.
        if self._head_deadline is None and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(
                self.guard.header_timeout, self._head_overdue
            )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()
