"""The uvicorn runner: the socket it listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cellvol.errors import AddressInUseError
from cellvol.server._runner import _listening_socket


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
