"""The fault proxy itself: it forwards, stalls without closing, and resets."""

from __future__ import annotations

import contextlib
import socket
import threading

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


def _client(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def test_it_forwards_and_a_paused_direction_stalls_without_closing(
    echo_server: tuple[str, int],
) -> None:
    with FaultProxy(*echo_server) as proxy:
        client = _client(proxy)
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        proxy.pause("down")
        client.sendall(b"again")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(5)
        assert proxy.connections == 1
        proxy.resume()
        client.settimeout(5)
        assert client.recv(5) == b"again"


def test_pause_after_a_pattern_stalls_only_that_connection(
    echo_server: tuple[str, int],
) -> None:
    with FaultProxy(*echo_server) as proxy:
        fired = proxy.pause_after(b"SELECT", "down")
        stalled, healthy = _client(proxy), _client(proxy)
        stalled.sendall(b"SELECT 1")
        assert fired.wait(5)
        stalled.settimeout(0.5)
        with pytest.raises(TimeoutError):
            stalled.recv(8)
        healthy.sendall(b"SELECT 2")
        assert healthy.recv(8) == b"SELECT 2"


def test_cut_resets_open_connections(echo_server: tuple[str, int]) -> None:
    with FaultProxy(*echo_server) as proxy:
        client = _client(proxy)
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        proxy.cut()
        try:
            answer = client.recv(1)
        except ConnectionResetError:
            answer = b""
        assert answer == b""


def test_pause_after_ignores_a_pattern_sent_before_it_was_armed(
    echo_server: tuple[str, int],
) -> None:
    with FaultProxy(*echo_server) as proxy:
        client = _client(proxy)
        client.sendall(b"INSERT one")
        assert client.recv(10) == b"INSERT one"
        fired = proxy.pause_after(b"INSERT", "down")
        client.sendall(b"COMMIT")  # the earlier INSERT is still in the proxy's tail
        assert client.recv(6) == b"COMMIT"
        assert not fired.is_set()
        client.sendall(b"INS")
        client.sendall(b"ERT two")  # seen whether or not the proxy reads it in two parts
        assert fired.wait(5)
