"""The HTTP API against what a hostile page or a careless client sends, in-process.

Forged cursors and wrong parameters are 422 naming the parameter (on SQLite and
PostgreSQL), an empty CSV is still CSV, every response carries the security headers,
and with a Host rule only loopback names and the allowed ones are answered.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.store.database import Database
from reconciler.web import create_app
from reconciler.web.guard import CONTENT_SECURITY_POLICY, host_name
from reconciler.web.tokens import load_tokens
from tests.webseed import BACKENDS, TOKENS, backend_url, seed_standard, tokens_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    for url in backend_url(str(request.param), tmp_path_factory.mktemp("hostile")):
        opened = Database.open(url)
        with opened.session() as session:
            seed_standard(session)
        yield opened
        opened.dispose()


@pytest.fixture(scope="module")
def client(database: Database) -> Iterator[TestClient]:
    app = create_app(database, app_path="reconciler.demo:app")
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def forged(text: str) -> str:
    """A cursor as the server encodes them, around any JSON text."""
    raw = text.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_of(*values: Any) -> str:
    return forged(json.dumps(values))


LISTS = ["/api/v1/tasks/", "/api/v1/executions", "/api/v1/applies"]
FORGED_CURSORS = {
    "nested 1,490 deep": forged("[" * 1490),
    "nested, closed": forged("[" * 1000 + "]" * 1000),
    "garbage base64": "!!!%%%***",
    "not JSON": forged("{nope"),
    "a mapping": cursor_of({"t": 1}),
    "NUL in a name": cursor_of("t", "name", None, "daily\x00report"),
    "lone surrogate in a name": forged('["t","name",null,"\\ud800"]'),
    "lone surrogate in an instant": forged('["t","next_run","\\udfff",""]'),
    "instant past year 9999 in UTC": cursor_of("t", "next_run", "9999-12-31T23:59:59-14:00", "a"),
    "instant before year 1 in UTC": cursor_of("t", "last_run", "0001-01-01T00:00:00+14:00", "a"),
    "instant without offset": cursor_of("t", "last_run", "2025-01-01T00:00:00", "a"),
    "a number for a name": cursor_of("t", "name", None, 5),
    "an id as text": cursor_of("e", "5"),
    "an id as float": cursor_of("e", 5.0),
    "an id too large": cursor_of("e", 2**70),
    "an id of 5,000 digits": forged('["e",' + "9" * 5000 + "]"),
    "true for an id": cursor_of("a", True),
}


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
def test_a_forged_cursor_is_422_naming_it(client: TestClient, path: str, cursor: str) -> None:
    for sort in ("name", "next_run", "last_run"):
        response = client.get(path, params={"cursor": cursor, "sort": sort})
        assert response.status_code == 422, (sort, response.text)
        body = response.json()
        assert body["message"].startswith("cursor: "), body
        if path != "/api/v1/tasks/":
            break  # only the task list sorts


def test_a_forged_cursor_on_a_tasks_executions_is_422(client: TestClient) -> None:
    for cursor in (FORGED_CURSORS["nested 1,490 deep"], FORGED_CURSORS["an id too large"]):
        response = client.get("/api/v1/tasks/daily-report/executions", params={"cursor": cursor})
        assert response.status_code == 422 and response.json()["message"].startswith("cursor: ")


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/v1/tasks/", {"limit": "x"}, "limit"),
        ("/api/v1/tasks/", {"limit": "1.5"}, "limit"),
        ("/api/v1/tasks/", {"limit": "0"}, "limit"),
        ("/api/v1/tasks/", {"limit": "٣"}, "limit"),
        ("/api/v1/tasks/", {"enabled": "2"}, "enabled"),
        ("/api/v1/tasks/", {"sort": "-next_run"}, "sort"),
        ("/api/v1/tasks/", {"type": "weekly"}, "type"),
        ("/api/v1/tasks/", {"format": "xml"}, "format"),
        ("/api/v1/tasks/", {"q": "a\x00b"}, "q"),
        ("/api/v1/tasks/", {"owner": "\x00"}, "owner"),
        ("/api/v1/executions", {"task": "x" * 201}, "task"),
        ("/api/v1/executions", {"status": "exploded"}, "status"),
        ("/api/v1/executions", {"since": "yesterday"}, "since"),
        ("/api/v1/executions", {"since": "9999-12-31T23:59:59-14:00"}, "since"),
        ("/api/v1/executions", {"until": "0001-01-01T00:00:00+14:00"}, "until"),
        ("/api/v1/executions", {"until": "2025-13-01"}, "until"),
        ("/api/v1/applies", {"limit": "501"}, "limit"),
        ("/api/v1/tasks/executions/0", {}, "id"),
        ("/api/v1/tasks/executions/1e3", {}, "id"),
        ("/api/v1/tasks/executions/99999999999999999999", {}, "id"),
    ],
)
def test_a_wrong_parameter_is_422_naming_it(
    client: TestClient, path: str, params: dict[str, str], parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{parameter}: ")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/daily%00report",
        "/api/v1/tasks/%ED%A0%80",
        "/api/v1/tasks/%ED%A0%80/executions",
        "/api/v1/tasks/%ED%A0%80/status",
        "/api/v1/executions?task=%ED%A0%80",
        "/api/v1/tasks/?q=%ED%A0%80",
        "/api/v1/tasks/?owner=%ED%A0%80",
    ],
)
def test_names_no_task_can_have_are_never_a_5xx(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (200, 404, 422), response.text
    if response.status_code == 200:
        assert response.json()["items"] == []


def test_an_empty_csv_is_csv_with_its_header(database: Database, tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    app = create_app(database, tokens=load_tokens(tmp_path / "tokens.yaml"))
    alice = {"Authorization": f"Bearer {TOKENS['alice']}"}
    with TestClient(app) as owner_client:
        cases = [
            ("/api/v1/tasks/", {"format": "csv", "owner": "ops"}, "name,owner,type,"),
            ("/api/v1/tasks/", {"format": "csv", "q": "no such task"}, "name,owner,type,"),
            ("/api/v1/executions", {"format": "csv", "task": "ops-cleanup"}, "id,task,"),
            ("/api/v1/executions", {"format": "csv", "status": "revoked"}, "id,task,"),
        ]
        for path, params, header in cases:
            response = owner_client.get(path, params=params, headers=alice)
            assert response.status_code == 200, (params, response.text)
            assert response.headers["content-type"] == "text/csv; charset=utf-8", params
            lines = response.text.splitlines()
            assert len(lines) == 1 and lines[0].startswith(header), (params, response.text)
            # The same list asked for by Accept rather than format=.
            params = {key: value for key, value in params.items() if key != "format"}
            by_accept = owner_client.get(
                path, params=params, headers={**alice, "Accept": "text/csv"}
            )
            assert by_accept.text == response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/static/app.js", 200),
        ("GET", "/api/v1/tasks/", 200),
        ("GET", "/api/v1/tasks/?format=csv", 200),
        ("GET", "/api/v1/tasks/nope", 404),
        ("GET", "/api/v1/tasks/?limit=x", 422),
        ("GET", "/healthz", 200),
        ("GET", "/openapi.json", 200),
        ("POST", "/api/v1/tasks/", 405),
        ("HEAD", "/", 200),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], name


def test_the_policy_allows_what_the_page_uses_and_nothing_inline(client: TestClient) -> None:
    page = client.get("/").text
    assert '<script src="/static/app.js"></script>' in page
    assert "<script>" not in page and "style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in CONTENT_SECURITY_POLICY.split("; ")
    )
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"] and directives["frame-ancestors"] == ["'none'"]
    assert all("unsafe" not in source for sources in directives.values() for source in sources)


# --- the Host rule ----------------------------------------------------------------------

LOOPBACK_HOSTS = [
    "localhost",
    "LOCALHOST:8000",
    "localhost.",
    "app.localhost:8000",
    "127.0.0.1",
    "127.0.0.1:8000",
    "127.8.9.10:1",
    "[::1]",
    "[::1]:8000",
]
FOREIGN_HOSTS = [
    "attacker.example.com",
    "attacker.example.com:8000",
    "localhost.attacker.example.com",
    "127.0.0.1.nip.io",
    "localhost:8000@attacker.example.com",
    "0.0.0.0:8000",
    "10.0.0.1",
    "[::2]:8000",
    "[::1]x",
    "[::1",
    "::1",
    "localhost:",
    "localhost:80a",
    "localhost:٣",
    "",
]


@pytest.fixture(scope="module")
def loopback_only(database: Database) -> Iterator[TestClient]:
    """The app as ``reconcile serve`` builds it without tokens, one proxy name allowed."""
    hosts = ("reconciler.example.com", "*.corp.example")
    app = create_app(database, allowed_hosts=hosts)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_names_are_answered(loopback_only: TestClient, host: str) -> None:
    for path in ("/", "/api/v1/tasks/", "/api/v1/tasks/daily-report"):
        assert loopback_only.get(path, headers={"Host": host}).status_code == 200, path


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_other_hosts_get_421_and_no_data(loopback_only: TestClient, host: str) -> None:
    for path in ("/", "/api/v1/tasks/", "/api/v1/tasks/daily-report", "/static/app.js"):
        response = loopback_only.get(path, headers={"Host": host.encode()})
        assert response.status_code == 421, (path, response.text)
        assert "daily-report" not in response.text and "<html" not in response.text
        assert "--allowed-host" in response.json()["detail"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert loopback_only.post("/api/v1/tasks/", headers={"Host": host.encode()}).status_code == 421


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("reconciler.example.com", True),
        ("Reconciler.Example.Com:443", True),
        ("a.corp.example", True),
        ("a.b.corp.example:8080", True),
        ("corp.example", False),
        ("evilcorp.example", False),
        ("reconciler.example.com.attacker.example", False),
    ],
)
def test_allowed_names_are_answered(loopback_only: TestClient, host: str, answered: bool) -> None:
    response = loopback_only.get("/api/v1/tasks/", headers={"Host": host})
    assert response.status_code == (200 if answered else 421)


def test_healthz_answers_any_host(loopback_only: TestClient) -> None:
    response = loopback_only.get("/healthz", headers={"Host": "10.1.2.3:8000"})
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_without_a_rule_any_host_is_answered(client: TestClient) -> None:
    assert client.get("/api/v1/tasks/", headers={"Host": "attacker.example.com"}).status_code == 200


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("LocalHost:80", "localhost"),
        ("[::1]:80", "::1"),
        ("example.com.", "example.com"),
        ("example.com:", None),
        ("[::1]:", None),
        (":80", None),
        ("a:b:c", None),
    ],
)
def test_host_name(value: str, name: str | None) -> None:
    assert host_name(value) == name
