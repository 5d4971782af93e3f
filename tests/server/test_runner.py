"""The uvicorn runner: the socket it listens on, the connections it can afford."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from cellvol.errors import AddressInUseError
from cellvol.server._runner import _FILES_RESERVE, _connection_budget, _listening_socket


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = _listening_socket("127.0.0.1", 0)
    yield sock
    sock.close()


def test_the_listening_socket_is_tcp_so_asyncio_turns_nagle_off(listener: socket.socket) -> None:
    # asyncio sets TCP_NODELAY only on connections of sockets whose protocol is TCP.
    assert listener.proto == socket.IPPROTO_TCP
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_accepted_connections_send_small_replies_without_waiting(listener: socket.socket) -> None:
    with socket.create_connection(listener.getsockname()[:2]) as client:
        connection, _ = listener.accept()
        with connection:
            assert connection.proto == socket.IPPROTO_TCP
            assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            connection.sendall(b"ok")
            assert client.recv(2) == b"ok"


def test_the_port_is_chosen_when_zero_and_held_until_closed(listener: socket.socket) -> None:
    host, port = listener.getsockname()[:2]
    assert host == "127.0.0.1"
    assert port > 0
    with pytest.raises(OSError, match="in use") as info:
        _listening_socket("127.0.0.1", port)
    assert isinstance(info.value, AddressInUseError)  # still an OSError for existing callers
    assert info.value.parameters == ("port", "port")  # the hint: another port, or 0


@pytest.mark.skipif(os.name != "posix", reason="open-file limits are POSIX")
@pytest.mark.parametrize(
    ("soft", "hard", "raised_to", "budget"),
    [
        (20_000, 20_000, None, 2048),  # room enough: nothing changes
        (1024, 1024, None, 1024 - _FILES_RESERVE),  # cannot raise: fewer connections
        (1024, 100_000, 2048 + _FILES_RESERVE, 2048),  # raised as far as needed, no further
    ],
)
def test_connections_fit_in_the_open_file_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, raised_to: int | None, budget: int
) -> None:
    import resource

    raised: list[int] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: raised.append(limits[0]))
    assert _connection_budget(2048) == budget
    assert raised == ([raised_to] if raised_to else [])
