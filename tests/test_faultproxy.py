"""The fault proxy itself: it forwards, stalls without closing, and resets."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy


@pytest.fixture
def echo_server() -> tuple[str, int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    host, port = listener.getsockname()
    return str(host), int(port)


@pytest.fixture
def proxy(echo_server: tuple[str, int]) -> Iterator[FaultProxy]:
    """Here, a fault proxy in front of the echo server."""
    with FaultProxy(*echo_server) as proxy:
        yield proxy


def _client(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def _round_trip(client: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read back as many bytes."""
    client.sendall(data)
    return client.recv(len(data))


def _assert_stalled(client: socket.socket, size: int) -> None:
    """Nothing arrives within half a second, and the connection stays open."""
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(size)


def test_it_forwards_and_a_paused_direction_stalls_without_closing(
    proxy: FaultProxy,
) -> None:
    client = _client(proxy)
    assert _round_trip(client, b"ping") == b"ping"
    proxy.pause("down")
    client.sendall(b"again")
    _assert_stalled(client, 5)
    assert proxy.connections == 1
    proxy.resume()
    client.settimeout(5)
    assert client.recv(5) == b"again"


def test_pause_after_a_pattern_stalls_only_that_connection(
    proxy: FaultProxy,
) -> None:
    fired = proxy.pause_after(b"SELECT", "down")
    stalled, healthy = _client(proxy), _client(proxy)
    stalled.sendall(b"SELECT 1")
    assert fired.wait(5)
    _assert_stalled(stalled, 8)
    assert _round_trip(healthy, b"SELECT 2") == b"SELECT 2"


def test_cut_resets_open_connections(proxy: FaultProxy) -> None:
    client = _client(proxy)
    assert _round_trip(client, b"x") == b"x"
    proxy.cut()
    try:
        answer = client.recv(1)
    except ConnectionResetError:
        answer = b""
    assert answer == b""


def test_pause_after_ignores_a_pattern_sent_before_it_was_armed(
    proxy: FaultProxy,
) -> None:
    client = _client(proxy)
    assert _round_trip(client, b"INSERT one") == b"INSERT one"
    fired = proxy.pause_after(b"INSERT", "down")
    client.sendall(b"COMMIT")  # the earlier INSERT is still in the proxy's tail
    assert client.recv(6) == b"COMMIT"
    assert not fired.is_set()
    client.sendall(b"INS")
    client.sendall(b"ERT two")  # seen whether or not the proxy reads it in two parts
    assert fired.wait(5)
