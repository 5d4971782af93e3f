"""The server under abuse: slow and half-open clients, too many connections from one client.

Every test runs a real server on 127.0.0.1 and talks to it over raw sockets, as an attacker
would: request heads left unfinished, sent a byte at a time, or connections left idle.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cellvol.server import Server

HALF_OPEN = b"GET /catalog HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends a head never comes


@contextmanager
def _server(image: Path, **options: float) -> Iterator[Server]:
    with Server([str(image)], **options) as server:  # type: ignore[arg-type]
        yield server


def _connect(server: Server, head: bytes = b"") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    if head:
        sock.sendall(head)
    return sock


def _get(server: Server, path: str = "/catalog") -> int:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed ``sock``: a read returns end-of-file (or a reset)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def _wait_closed(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """The sockets of ``socks`` the server has not closed ``within`` seconds."""
    deadline = time.monotonic() + within
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        select.select(open_, [], [], 0.1)
        open_ = [s for s in open_ if not _closed_by_server(s)]
    return open_


def test_half_open_connections_do_not_starve_other_clients(running) -> None:
    # 300 unfinished request heads used to fill uvicorn's 256 connections: everyone got 503.
    with _server(running.image, header_timeout=2.0, max_connections_per_client=1000) as server:
        half_open = [_connect(server, HALF_OPEN) for _ in range(300)]
        try:
            statuses = [_get(server) for _ in range(5)]
            assert statuses == [200] * 5  # served while the 300 are still open
            assert not [s for s in half_open if _closed_by_server(s)]  # they were, really
            # The server closes them once their heads are overdue, not later.
            assert not _wait_closed(half_open, within=8.0)
            assert _get(server) == 200
        finally:
            for sock in half_open:
                sock.close()


def test_a_head_sent_a_byte_at_a_time_is_closed_after_the_header_timeout(running) -> None:
    # Each byte arrives well within any idle timeout; only a deadline on the whole head helps.
    with _server(running.image, header_timeout=1.0) as server:
        sock = _connect(server)
        try:
            start = time.monotonic()
            for byte in HALF_OPEN * 10:
                if _closed_by_server(sock):
                    break
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.05)
                assert time.monotonic() - start < 6.0, "the slow head was never cut off"
            assert not _wait_closed([sock], within=2.0)
            assert time.monotonic() - start >= 0.9
        finally:
            sock.close()


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(running) -> None:
    with _server(running.image, header_timeout=1.0, idle_timeout=30.0) as server:
        sock = _connect(server, b"GET /catalog HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
            sock.sendall(HALF_OPEN)  # the second request never ends
            start = time.monotonic()
            assert not _wait_closed([sock], within=6.0)
            assert time.monotonic() - start >= 0.8
        finally:
            sock.close()


def test_connections_that_send_nothing_are_closed(running) -> None:
    with _server(running.image, header_timeout=1.0) as server:
        idle = [_connect(server) for _ in range(5)]
        try:
            assert not _wait_closed(idle, within=6.0)
        finally:
            for sock in idle:
                sock.close()


def test_one_client_cannot_hold_more_than_its_share_of_connections(running) -> None:
    with _server(running.image, max_connections_per_client=4) as server:
        held = [_connect(server, HALF_OPEN) for _ in range(4)]
        try:
            extra = _connect(server, b"GET /catalog HTTP/1.1\r\nHost: x\r\n\r\n")
            with extra:
                reply = b""
                try:
                    while chunk := extra.recv(65536):
                        reply += chunk
                except ConnectionResetError:
                    pass
                assert reply == b"" or reply.startswith(b"HTTP/1.1 503"), reply[:100]
            assert not [s for s in held if _closed_by_server(s)]  # the first four are untouched
            held.pop().close()
            deadline = time.monotonic() + 5
            while _get(server) != 200:  # once the server has seen the close
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            for sock in held:
                sock.close()


def test_the_global_cap_refuses_connections_beyond_it(running) -> None:
    with _server(running.image, max_connections=8, max_connections_per_client=100) as server:
        held = [_connect(server, HALF_OPEN) for _ in range(8)]
        try:
            with _connect(server) as extra:
                assert not _wait_closed([extra], within=3.0)
        finally:
            for sock in held:
                sock.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("header_timeout", 0.0),
        ("idle_timeout", -1.0),
        ("max_connections", 0),
        ("max_connections_per_client", -1),
    ],
)
def test_limits_must_be_positive(running, option: str, value: float) -> None:
    from cellvol.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=option):
        Server([str(running.image)], **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 on a dual-stack socket: the same client
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # one host's /64: one client
        ("/run/cellvol.sock", "/run/cellvol.sock"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_network(address: str, key: str) -> None:
    from cellvol.server._guard import client_key

    assert client_key(address) == key


def test_the_guard_counts_each_client_apart_and_all_together() -> None:
    from cellvol.server._guard import ConnectionGuard

    guard = ConnectionGuard(total=5, per_client=2, header_timeout=1.0)
    assert [guard.admit("a") for _ in range(3)] == [True, True, False]
    assert [guard.admit(c) for c in "bbc"] == [True, True, True]
    assert not guard.admit("d")  # 5 open: the total
    guard.release("a")
    assert guard.admit("d")
    assert (guard.count, guard.refused, dict(guard.open)) == (
        5,
        2,
        {"a": 1, "b": 2, "c": 1, "d": 1},
    )
    unlimited = ConnectionGuard(total=100, per_client=0, header_timeout=1.0)
    assert all(unlimited.admit("a") for _ in range(100))


def test_a_head_too_long_to_buffer_is_refused(running) -> None:
    # What bounds each connection's memory: at most 16 KiB of an unfinished head.
    with _server(running.image) as server, _connect(server) as sock:
        sock.sendall(b"GET /catalog HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
