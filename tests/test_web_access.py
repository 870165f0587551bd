"""The access matrix of the HTTP API: no token, wrong token, owner, other owner, admin.

Owner tokens see only their owner's tasks and executions; anything else is 404 exactly
as if it did not exist, in lists, CSV and single lookups alike.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConfigError
from reconciler.store.database import Database
from reconciler.tokens import hash_token, load_tokens
from reconciler.web import create_app
from tests.webseed import BACKENDS, TOKENS, backend_url, seed_standard, tokens_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

WHO = {
    "none": {},
    "wrong": {"Authorization": "Bearer not-a-token"},
    "basic": {"Authorization": "Basic YWxpY2U6YWxpY2Utc2VjcmV0"},
    "alice": {"Authorization": f"Bearer {TOKENS['alice']}"},  # owner billing
    "olga": {"Authorization": f"Bearer {TOKENS['olga']}"},  # owner ops
    "root": {"Authorization": f"Bearer {TOKENS['root']}"},  # admin
}
UNAUTHENTICATED = ("none", "wrong", "basic")


@pytest.fixture(scope="module", params=BACKENDS)
def app_and_ids(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, int]]]:
    directory = tmp_path_factory.mktemp("access")
    (directory / "tokens.yaml").write_text(tokens_yaml())
    tokens = load_tokens(directory / "tokens.yaml")
    for url in backend_url(str(request.param), directory):
        database = Database.open(url)
        with database.session() as session:
            ids = seed_standard(session)
        with TestClient(create_app(database, tokens=tokens)) as client:
            yield client, ids
        database.dispose()


@pytest.fixture(scope="module")
def client(app_and_ids: tuple[TestClient, dict[str, int]]) -> TestClient:
    return app_and_ids[0]


@pytest.fixture(scope="module")
def ids(app_and_ids: tuple[TestClient, dict[str, int]]) -> dict[str, int]:
    return app_and_ids[1]


# (path template, who may see it); every other valid token gets 404.
SINGLE = [
    ("/api/v1/tasks/daily-report", {"alice", "root"}),
    ("/api/v1/tasks/daily-report/status", {"alice", "root"}),
    ("/api/v1/tasks/daily-report/executions", {"alice", "root"}),
    ("/api/v1/tasks/daily-report/executions?format=csv", {"alice", "root"}),
    ("/api/v1/tasks/executions/{ok}", {"alice", "root"}),
    ("/api/v1/tasks/old-report", {"alice", "root"}),
    ("/api/v1/tasks/old-report/executions", {"alice", "root"}),
    ("/api/v1/tasks/executions/{old}", {"alice", "root"}),
    ("/api/v1/tasks/ops-cleanup", {"olga", "root"}),
    ("/api/v1/tasks/ops-cleanup/status", {"olga", "root"}),
    ("/api/v1/tasks/ops-cleanup/executions?format=csv", {"olga", "root"}),
    ("/api/v1/tasks/executions/{ops}", {"olga", "root"}),
]
LISTS = [
    "/api/v1/tasks/",
    "/api/v1/tasks/?format=csv",
    "/api/v1/executions",
    "/api/v1/executions?format=csv",
    "/api/v1/applies",
    "/api/v1/tasks/registered",
    "/metrics",
]
PUBLIC = ["/healthz", "/", "/static/app.js", "/openapi.json"]


@pytest.mark.parametrize("who", list(WHO))
@pytest.mark.parametrize(("path", "visible"), SINGLE)
def test_single_lookups(
    client: TestClient, ids: dict[str, int], who: str, path: str, visible: set[str]
) -> None:
    response = client.get(path.format(**ids), headers=WHO[who])
    if who in UNAUTHENTICATED:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Bearer realm="reconciler"')
    else:
        assert response.status_code == (200 if who in visible else 404), response.text


@pytest.mark.parametrize("who", list(WHO))
@pytest.mark.parametrize("path", LISTS)
def test_lists_need_a_token(client: TestClient, who: str, path: str) -> None:
    response = client.get(path, headers=WHO[who])
    assert response.status_code == (401 if who in UNAUTHENTICATED else 200), response.text


@pytest.mark.parametrize("who", list(WHO))
@pytest.mark.parametrize("path", PUBLIC)
def test_public_paths_hold_no_data(client: TestClient, who: str, path: str) -> None:
    assert client.get(path, headers=WHO[who]).status_code == 200


@pytest.mark.parametrize("who", ["none", "alice", "root"])
def test_writes_are_405_whoever_asks(client: TestClient, who: str) -> None:
    response = client.post("/api/v1/tasks/", headers=WHO[who], json={})
    assert response.status_code == 405


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("who", "tasks", "executions"),
    [
        ("alice", ["billing-async", "daily-report"], ["failed", "ok", "old"]),
        ("olga", ["ops-cleanup"], ["running", "ops"]),
        ("root", ["billing-async", "daily-report", "ops-cleanup"], None),
    ],
)
def test_lists_and_csv_show_only_the_owners_rows(
    client: TestClient,
    ids: dict[str, int],
    who: str,
    tasks: list[str],
    executions: list[str] | None,
) -> None:
    headers = WHO[who]
    expected = (
        sorted(ids.values(), reverse=True)
        if executions is None
        else sorted((ids[label] for label in executions), reverse=True)
    )
    listed = client.get("/api/v1/tasks/", headers=headers).json()["items"]
    assert [t["name"] for t in listed] == tasks
    exported = rows(client.get("/api/v1/tasks/?format=csv", headers=headers).text)
    assert [t["name"] for t in exported] == tasks
    listed = client.get("/api/v1/executions", headers=headers).json()["items"]
    assert [e["id"] for e in listed] == expected
    exported = rows(
        client.get("/api/v1/executions", headers={**headers, "Accept": "text/csv"}).text
    )
    assert [int(e["id"]) for e in exported] == expected
    text = client.get("/metrics", headers=headers).text
    assert ('task="ops-cleanup"' in text) == (who != "alice")
    assert ('task="daily-report"' in text) == (who != "olga")


def test_an_owner_asking_for_another_owner_gets_nothing(client: TestClient) -> None:
    body = client.get("/api/v1/tasks/?owner=ops", headers=WHO["alice"]).json()
    assert body == {"items": [], "next_cursor": None}
    body = client.get("/api/v1/executions?task=ops-cleanup", headers=WHO["alice"]).json()
    assert body["items"] == []


def test_the_apply_log_names_only_the_owners_tasks(client: TestClient) -> None:
    def names(who: str) -> list[tuple[list[str], list[str]]]:
        items = client.get("/api/v1/applies", headers=WHO[who]).json()["items"]
        return [(a["created_names"], a["deleted_names"]) for a in items]

    assert names("alice") == [([], ["old-report"]), (["daily-report", "old-report"], [])]
    assert names("olga") == [([], []), (["ops-cleanup"], [])]
    assert names("root")[1][0] == ["daily-report", "ops-cleanup", "old-report"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: nope", "expected a mapping with a 'tokens' list"),
        ("tokens: []", "'tokens' is empty"),
        ("tokens: [{name: a, sha256: abc, owner: x}]", "tokens[0] (a): sha256: expected the 64"),
        (f"tokens: [{{name: a, sha256: {'a' * 64}}}]", "give exactly one of 'owner: NAME'"),
        (
            f"tokens: [{{name: a, sha256: {'a' * 64}, owner: x, admin: true}}]",
            "give exactly one of",
        ),
        (f"tokens: [{{name: a, sha256: {'a' * 64}, owner: x, role: y}}]", "unknown field(s) role"),
        (
            f"tokens: [{{name: a, sha256: {'a' * 64}, owner: x}}, "
            f"{{name: a, sha256: {'b' * 64}, admin: true}}]",
            "token name 'a' is used twice",
        ),
        ("tokens: [", "not valid YAML"),
    ],
)
def test_bad_tokens_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_tokens(path)
    assert str(info.value).startswith(f"tokens file {path}: ")
    assert message in str(info.value)


def test_token_lookup(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(tokens_yaml())
    tokens = load_tokens(path)
    alice: Any = tokens.authenticate("alice-secret")
    assert alice.owner == "billing" and not alice.admin
    assert tokens.authenticate("root-secret").admin  # type: ignore[union-attr]
    assert tokens.authenticate("alice-secret ") is None
    assert hash_token("alice-secret") == alice.digest.hex()
    with pytest.raises(ConfigError, match="cannot read it"):
        load_tokens(tmp_path / "missing.yaml")
