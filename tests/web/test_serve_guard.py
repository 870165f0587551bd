"""``reconcile serve`` as a real process against hostile and careless use: Host names
without tokens, tokens settings that point at nothing, and clients that send their
request slowly or not at all (docs/security.md)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.services import free_port
from reconciler.errors import UsageError
from reconciler.web.server import resolve_allowed_hosts
from tests.web.test_serve import run_serve
from tests.webseed import seeded_state
from tests.webserve import serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``reconcile serve`` without tokens on a seeded SQLite store: one proxy name allowed
    on the command line, a wildcard in the environment, short header and idle timeouts."""
    directory = tmp_path_factory.mktemp("guard")
    url = seeded_state(directory)
    options: tuple[str, ...] = ("--allowed-host", "reconciler.example.com")
    options += ("--header-timeout", "1", "--keep-alive-timeout", "1")
    env = {"RECONCILER_ALLOWED_HOSTS": "*.corp.example, other.example"}
    with serving(url, directory / "serve.log", *options, env=env) as (base, _):
        yield base, int(base.rsplit(":", 1)[1])


def test_without_tokens_only_loopback_and_allowed_names_are_answered(
    server: tuple[str, int],
) -> None:
    base, port = server
    answered = [f"127.0.0.1:{port}", f"localhost:{port}", "reconciler.example.com"]
    answered += ["x.corp.example", "other.example:8443"]
    for host in answered:
        response = httpx.get(f"{base}/api/v1/tasks/", headers={"Host": host})
        assert response.status_code == 200, host
        assert "daily-report" in response.text
    for host in ("attacker.example.com", f"attacker.example.com:{port}", "corp.example"):
        for path in ("/", "/api/v1/tasks/", "/api/v1/executions"):
            response = httpx.get(f"{base}{path}", headers={"Host": host})
            assert response.status_code == 421, (host, path)
            assert "daily-report" not in response.text
            assert "--allowed-host" in response.json()["detail"]
    # A liveness probe may use any name; it holds no data.
    assert httpx.get(f"{base}/healthz", headers={"Host": "10.0.0.7"}).status_code == 200


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_without_a_host_header_is_refused(server: tuple[str, int]) -> None:
    _, port = server
    answer = raw_request(port, b"GET /api/v1/tasks/ HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    assert b"daily-report" not in answer and b"no Host header" in answer


def test_the_page_carries_its_security_headers(server: tuple[str, int]) -> None:
    base, _ = server
    response = httpx.get(f"{base}/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


DRIBBLE_EVERY = 0.2  # seconds between the bytes of a slow client
BOUND = 8.0  # seconds a test waits for the server to end a connection (timeouts are 1 s)


def dribble(sock: socket.socket, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time, ``DRIBBLE_EVERY`` apart, until the server closes
    the connection or BOUND passes; what the server sent, and when it closed."""
    started = time.monotonic()
    sock.settimeout(DRIBBLE_EVERY)
    received = b""
    for byte in data:
        if time.monotonic() - started > BOUND:
            break
        try:
            sock.send(bytes([byte]))
        except OSError:  # reset: the server has closed it
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def slow_head(host: str) -> bytes:
    """A request head whose headers never end: what a slowloris client sends."""
    return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode() + b"X-Padding: a\r\n" * 200


def test_headers_sent_slowly_are_cut_off_with_408(server: tuple[str, int]) -> None:
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received, elapsed = dribble(sock, slow_head(f"127.0.0.1:{port}"))
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert elapsed < BOUND


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_request(
    server: tuple[str, int],
) -> None:
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 ")
        received, elapsed = dribble(sock, slow_head(f"127.0.0.1:{port}"))
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert elapsed < BOUND


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server, nothing said
        assert time.monotonic() - started < BOUND


def test_an_idle_kept_alive_connection_is_closed(server: tuple[str, int]) -> None:
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b'{"status":"ok"}')


def test_a_request_in_time_is_served_after_slow_ones(server: tuple[str, int]) -> None:
    base, _ = server
    assert httpx.get(f"{base}/api/v1/tasks/daily-report").status_code == 200


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("env", "", "RECONCILER_TOKENS_FILE is set but empty"),
        ("env", "   ", "RECONCILER_TOKENS_FILE is set but empty"),
        ("flag", "", "--tokens-file is set but empty"),
        ("env", "missing.yaml", "RECONCILER_TOKENS_FILE missing.yaml: cannot read it"),
        ("flag", "tokns.yaml", "--tokens-file tokns.yaml: cannot read it"),
        ("flag", "empty.yaml", "--tokens-file empty.yaml: expected a mapping with a 'tokens'"),
        ("env", "none.yaml", "RECONCILER_TOKENS_FILE none.yaml: 'tokens' is empty"),
        ("flag", "broken.yaml", "--tokens-file broken.yaml: not valid YAML: line 1, column"),
        ("flag", "invalid.yaml", "--tokens-file invalid.yaml: tokens[0] (a): sha256"),
    ],
)
def test_a_tokens_setting_that_gives_no_tokens_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, message: str
) -> None:
    (tmp_path / "tokens.yaml").write_text("tokens: []\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "none.yaml").write_text("tokens: []\n")
    (tmp_path / "broken.yaml").write_text("tokens: [a: b: c]\n")
    (tmp_path / "invalid.yaml").write_text("tokens:\n  - {name: a, sha256: abc, owner: x}\n")
    if setting == "env":
        monkeypatch.setenv("RECONCILER_TOKENS_FILE", value)
        args: tuple[str, ...] = ()
    else:
        monkeypatch.delenv("RECONCILER_TOKENS_FILE", raising=False)
        args = ("--tokens-file", value)
    result = run_serve(*args, "--port", str(free_port()), tmp_path=tmp_path, timeout=20)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"error: {message}"), lines[0]
    assert "Started server" not in result.stderr


def test_allowed_hosts_from_the_flag_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_ALLOWED_HOSTS", " *.Corp.Example:443 ,, b.example. ")
    flags = ("A.example.com:8443", "b.example")
    assert resolve_allowed_hosts(flags) == ("a.example.com", "b.example", "*.corp.example")
    for bad in ("http://x/", "a b", "*.", "*.a@b", "[::1"):
        with pytest.raises(UsageError, match="is not a host name"):
            resolve_allowed_hosts((bad,))


def test_a_bad_allowed_host_is_a_usage_error(tmp_path: Path) -> None:
    result = run_serve("--allowed-host", "http://x/", "--port", str(free_port()), tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "'http://x/' is not a host name" in result.stderr and "Traceback" not in result.stderr


def test_workers_keep_the_host_rule_and_the_header_deadline(tmp_path: Path) -> None:
    """With ``--workers 2`` each worker process builds its app from the environment: the
    same allowed names and header timeout as the command line."""
    url = seeded_state(tmp_path)
    options: tuple[str, ...] = ("--workers", "2", "--allowed-host", "reconciler.example.com")
    options += ("--header-timeout", "1")
    with serving(url, tmp_path / "serve.log", *options, cwd=tmp_path) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        for _ in range(6):  # new connections each time, spread over the workers
            allowed = httpx.get(f"{base}/api/v1/tasks/", headers={"Host": "reconciler.example.com"})
            assert allowed.status_code == 200
            refused = httpx.get(f"{base}/api/v1/tasks/", headers={"Host": "attacker.example.com"})
            assert refused.status_code == 421
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                received, elapsed = dribble(sock, slow_head(f"127.0.0.1:{port}"))
            assert received.startswith(b"HTTP/1.1 408 "), received
            assert elapsed < BOUND
