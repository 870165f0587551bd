"""The access matrix of the HTTP API: no token, wrong token, owner, other owner, admin.

Owner tokens see only their owner's tasks and the executions that ran under their owner
(an owner change or a revived name hands no history over); anything else is 404 exactly
as if it did not exist, in lists, CSV and single lookups alike.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from reconciler.errors import ConfigError
from reconciler.store.database import Database
from reconciler.store.tables import Task
from reconciler.web import create_app
from reconciler.web.tokens import hash_token, load_tokens
from tests.webseed import (
    BACKENDS,
    T0,
    TOKENS,
    add_execution,
    add_task,
    backend_url,
    seed_standard,
    tokens_yaml,
)

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


# --- access follows the execution: an owner change and a revived name --------------------


@pytest.fixture(scope="module", params=BACKENDS)
def moved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, int]]]:
    """``payroll`` moves from billing to ops and runs again; ``legacy`` (billing) is deleted,
    then defined again by ops and runs; ``handover`` moves to ops and has not run since.
    Executions take their owner from the task row when inserted (migration 0004)."""
    directory = tmp_path_factory.mktemp("moved")
    (directory / "tokens.yaml").write_text(tokens_yaml())
    tokens = load_tokens(directory / "tokens.yaml")
    hour = dt.timedelta(hours=1)
    for url in backend_url(str(request.param), directory):
        database = Database.open(url)
        with database.session() as s:
            ids: dict[str, int] = {}
            for name in ("payroll", "legacy", "handover"):
                add_task(s, name, owner="billing")
            ids["payroll-billing"] = add_execution(
                s, "payroll", result={"salary": 1}, kwargs={"password": "p"}
            ).id
            ids["legacy-billing"] = add_execution(s, "legacy", queued_at=T0 + hour).id
            ids["handover-billing"] = add_execution(s, "handover", queued_at=T0 + 2 * hour).id
            s.execute(update(Task).where(Task.name == "legacy").values(deleted_at=T0 + 3 * hour))
            s.execute(
                update(Task)
                .where(Task.name.in_(["payroll", "handover"]))
                .values(owner="ops", updated_at=T0 + 3 * hour)
            )
            s.execute(
                update(Task).where(Task.name == "legacy").values(owner="ops", deleted_at=None)
            )
            ids["payroll-ops"] = add_execution(s, "payroll", queued_at=T0 + 4 * hour).id
            ids["legacy-ops"] = add_execution(s, "legacy", queued_at=T0 + 5 * hour).id
        with TestClient(create_app(database, tokens=tokens)) as client:
            yield client, ids
        database.dispose()


MOVED_BILLING = ("payroll-billing", "legacy-billing", "handover-billing")
MOVED_OPS = ("payroll-ops", "legacy-ops")


@pytest.mark.parametrize("who", ["alice", "olga", "root"])
def test_executions_stay_with_the_owner_they_ran_under(
    moved: tuple[TestClient, dict[str, int]], who: str
) -> None:
    client, ids = moved
    headers = WHO[who]
    mine = {"alice": MOVED_BILLING, "olga": MOVED_OPS, "root": MOVED_BILLING + MOVED_OPS}[who]
    for label, id in ids.items():
        response = client.get(f"/api/v1/tasks/executions/{id}", headers=headers)
        assert response.status_code == (200 if label in mine else 404), (label, response.text)
    expected = sorted((ids[label] for label in mine), reverse=True)
    listed = client.get("/api/v1/executions", headers=headers).json()["items"]
    assert [item["id"] for item in listed] == expected
    exported = rows(client.get("/api/v1/executions?format=csv", headers=headers).text)
    assert [int(row["id"]) for row in exported] == expected
    for name in ("payroll", "legacy", "handover"):
        own = sorted((ids[k] for k in mine if k.startswith(name)), reverse=True)
        page = client.get(f"/api/v1/tasks/{name}/executions", headers=headers)
        assert page.status_code == (200 if own or who != "alice" else 404), page.text
        if page.status_code == 200:
            assert [item["id"] for item in page.json()["items"]] == own
            csv_page = client.get(f"/api/v1/tasks/{name}/executions?format=csv", headers=headers)
            assert [int(row["id"]) for row in rows(csv_page.text)] == own
    metrics = client.get("/metrics", headers=headers).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("reconciler_executions{")
    )
    assert counted == len(mine)


def test_the_old_owner_no_longer_sees_the_task_itself(
    moved: tuple[TestClient, dict[str, int]],
) -> None:
    client, _ = moved
    for name in ("payroll", "legacy", "handover"):
        for path in (f"/api/v1/tasks/{name}", f"/api/v1/tasks/{name}/status"):
            assert client.get(path, headers=WHO["alice"]).status_code == 404
            assert client.get(path, headers=WHO["olga"]).status_code == 200
    listed = client.get("/api/v1/tasks/", headers=WHO["alice"]).json()["items"]
    assert listed == []


@pytest.mark.parametrize("sort", ["name", "last_run", "-last_run"])
def test_the_new_owner_sees_only_its_own_last_run(
    moved: tuple[TestClient, dict[str, int]], sort: str
) -> None:
    client, ids = moved
    last = {"payroll": ids["payroll-ops"], "legacy": ids["legacy-ops"], "handover": None}
    for name, expected in last.items():
        status = client.get(f"/api/v1/tasks/{name}/status", headers=WHO["olga"]).json()
        assert status["last_execution_id"] == expected, name
        assert (status["last_status"] is None) == (expected is None)
        detail = client.get(f"/api/v1/tasks/{name}", headers=WHO["olga"]).json()
        assert detail["last_execution_id"] == expected
    listed = client.get(f"/api/v1/tasks/?sort={sort}", headers=WHO["olga"]).json()["items"]
    assert {t["name"]: t["last_execution_id"] for t in listed} == last
    payroll = next(t for t in listed if t["name"] == "payroll")
    assert (payroll["last_run"], payroll["last_status"]) == ("2025-01-01T16:00:00+00:00", "success")
    if sort == "-last_run":
        assert [t["name"] for t in listed] == ["legacy", "payroll", "handover"]
    # An admin sees the latest execution, whoever it ran under.
    root = client.get("/api/v1/tasks/handover/status", headers=WHO["root"]).json()
    assert root["last_execution_id"] == ids["handover-billing"]
