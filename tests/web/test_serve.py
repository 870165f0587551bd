"""``reconcile serve`` as a real process: access, CSV over the wire, 405, the bind rule."""

from __future__ import annotations

import csv
import http.client
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.services import free_port, healthy
from reconciler.errors import UsageError
from reconciler.store.database import Database
from reconciler.web.protocol import REQUESTS_PER_CONNECTION
from reconciler.web.server import check_bind, is_loopback
from reconciler.web.tokens import TokenSet
from tests.support import Process, reconcile_argv, wait_for
from tests.webseed import TOKENS, backend_url, seed_standard, seeded_state, tokens_yaml
from tests.webserve import serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    """A seeded PostgreSQL store and ``reconcile serve`` on it with a tokens file."""
    directory = tmp_path_factory.mktemp("serve")
    tokens = directory / "tokens.yaml"
    tokens.write_text(tokens_yaml())
    for url in backend_url("postgresql", directory):
        database = Database.open(url)
        with database.session() as session:
            ids = seed_standard(session)
        database.dispose()
        with serving(url, directory / "serve.log", "--tokens-file", str(tokens)) as (base, _):
            yield base, ids


def get(base: str, path: str, who: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
    return httpx.get(f"{base}{path}", headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/tasks/daily-report", {None: 401, "alice": 200, "olga": 404, "root": 200}),
        ("/api/v1/tasks/daily-report/status", {None: 401, "alice": 200, "olga": 404, "root": 200}),
        (
            "/api/v1/tasks/daily-report/executions?format=csv",
            {None: 401, "alice": 200, "olga": 404, "root": 200},
        ),
        ("/api/v1/tasks/executions/{ops}", {None: 401, "alice": 404, "olga": 200, "root": 200}),
        (
            "/api/v1/tasks/ops-cleanup/executions",
            {None: 401, "alice": 404, "olga": 200, "root": 200},
        ),
        ("/api/v1/tasks/registered", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/api/v1/tasks/?format=csv", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/api/v1/executions", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/openapi.json", {None: 200, "alice": 200, "olga": 200, "root": 200}),
        ("/api/v1/tasks/", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/api/v1/executions?format=csv", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/api/v1/applies", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/metrics", {None: 401, "alice": 200, "olga": 200, "root": 200}),
        ("/healthz", {None: 200, "alice": 200, "olga": 200, "root": 200}),
        ("/", {None: 200, "alice": 200, "olga": 200, "root": 200}),
    ],
)
def test_access_over_http(
    server: tuple[str, dict[str, int]], path: str, expected: dict[str | None, int]
) -> None:
    base, ids = server
    for who, status in expected.items():
        assert get(base, path.format(**ids), who).status_code == status, (path, who)


def test_csv_export_streams_the_owners_rows(server: tuple[str, dict[str, int]]) -> None:
    base, ids = server
    with httpx.stream(
        "GET",
        f"{base}/api/v1/executions",
        headers={"Authorization": f"Bearer {TOKENS['olga']}", "Accept": "text/csv"},
    ) as response:
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        text = response.read().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in rows] == [ids["running"], ids["ops"]]
    assert rows[1]["error"].startswith("'@")


def test_writes_are_405_and_head_works(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    response = httpx.delete(f"{base}/api/v1/tasks/daily-report")
    assert response.status_code == 405 and "reconcile trigger" in response.json()["detail"]
    head = httpx.head(
        f"{base}/api/v1/tasks/", headers={"Authorization": f"Bearer {TOKENS['root']}"}
    )
    assert head.status_code == 200 and head.content == b""


def run_serve(*args: str, tmp_path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "serve", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def test_a_public_address_without_tokens_is_refused(tmp_path: Path) -> None:
    result = run_serve("--host", "0.0.0.0", "--port", str(free_port()), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "--host 0.0.0.0: refusing to listen on a non-loopback address" in result.stderr
    assert "--insecure" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("example.com", False),
    ],
)
def test_the_bind_rule(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_bind(host, tokens=None, insecure=True)
    check_bind(host, tokens=TokenSet(()), insecure=False)
    if loopback:
        check_bind(host, tokens=None, insecure=False)
    else:
        with pytest.raises(UsageError, match=f"--host {re.escape(host)}: refusing"):
            check_bind(host, tokens=None, insecure=False)


def test_a_bad_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text("tokens: [{name: a}]")
    result = run_serve("--tokens-file", str(tmp_path / "tokens.yaml"), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "tokens[0] (a): sha256: expected the 64 hex digits" in result.stderr


@pytest.mark.parametrize("flag", ["--insecure", "--tokens-file"])
def test_a_public_address_is_allowed_with_tokens_or_insecure(tmp_path: Path, flag: str) -> None:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    args = (
        ["--insecure"] if flag == "--insecure" else ["--tokens-file", str(tmp_path / "tokens.yaml")]
    )
    port = free_port()
    url = f"sqlite:///{tmp_path / 'state.db'}"
    argv = reconcile_argv(
        "serve", "--database-url", url, "--host", "0.0.0.0", "--port", str(port), *args
    )
    with Process(argv, tmp_path / "serve.log", cwd=tmp_path) as process:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), 30, message="serve on 0.0.0.0")
        status = httpx.get(f"http://127.0.0.1:{port}/api/v1/tasks/").status_code
        assert status == (200 if flag == "--insecure" else 401)
    assert "0.0.0.0" in process.output()


def test_workers_serve_and_stop_on_sigterm(tmp_path: Path) -> None:
    """``--workers 2``: every worker answers with the settings and tokens of the command
    line (a relative tokens path too), and SIGTERM to the server stops all of them."""
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    url = seeded_state(tmp_path)
    options = ("--tokens-file", "tokens.yaml", "--workers", "2")
    with serving(url, tmp_path / "serve.log", *options, cwd=tmp_path) as (base, process):
        for _ in range(10):  # new connections each time, spread over the workers
            assert get(base, "/api/v1/tasks/daily-report", "alice").status_code == 200
            assert get(base, "/api/v1/tasks/daily-report", "olga").status_code == 404
            assert get(base, "/api/v1/tasks/").status_code == 401
        os.kill(process.pid, signal.SIGTERM)  # the supervisor only, as a service manager does
        assert process.popen.wait(30) == 0, process.output()

        def group_gone() -> bool:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(group_gone, 15, message="the workers to exit")
    assert process.output().count("Started server process") == 2
    assert not healthy(base)


def test_workers_still_check_tokens_before_starting(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text("tokens: [{name: a}]")
    args = ("--tokens-file", str(tmp_path / "tokens.yaml"), "--workers", "2")
    result = run_serve(*args, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "tokens[0] (a): sha256: expected the 64 hex digits" in result.stderr
    assert "Started" not in result.stderr
    refused = run_serve("--host", "0.0.0.0", "--workers", "2", tmp_path=tmp_path)
    assert refused.returncode == 2 and "refusing" in refused.stderr


def test_a_keep_alive_connection_ends_after_its_share_of_requests(
    server: tuple[str, dict[str, int]],
) -> None:
    """So that clients reconnect now and then, and connections that all landed on one
    worker process spread out again (``reconciler.web.protocol``)."""
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    sock_ids = set()
    try:
        for number in range(1, REQUESTS_PER_CONNECTION + 1):
            connection.request("GET", "/healthz")
            sock_ids.add(id(connection.sock))
            response = connection.getresponse()
            assert response.status == 200 and response.read() == b'{"status":"ok"}'
            closing = response.getheader("connection") == "close"
            assert closing == (number == REQUESTS_PER_CONNECTION), number
        assert len(sock_ids) == 1  # one connection carried all of them
        assert connection.sock is None  # http.client closed it, as the server said
        # The next request opens a new connection, which serves its own share again.
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("connection") != "close"
        response.read()
    finally:
        connection.close()
