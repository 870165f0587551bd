"""What the operator's page reads from the API (docs/page.md, docs/http-api.md): the task
list's last-status and label filters, the overview for the header, and a task's detail
with its definition redacted, its next five fires and links to its commit. On SQLite and
PostgreSQL, with an owner's token and an admin's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.schedulefields import schedule_text
from reconciler.core.spec import TaskSpec
from reconciler.store.database import Database
from reconciler.store.tables import Task
from reconciler.web import create_app
from reconciler.web.tokens import load_tokens
from tests.webseed import (
    BACKENDS,
    T0,
    TOKENS,
    add_apply,
    add_execution,
    add_task,
    backend_url,
    seed_standard,
    tokens_yaml,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

ROOT = {"Authorization": f"Bearer {TOKENS['root']}"}
ALICE = {"Authorization": f"Bearer {TOKENS['alice']}"}  # owner billing
OLGA = {"Authorization": f"Bearer {TOKENS['olga']}"}  # owner ops
REPOSITORY = "https://git.example.com/acme/schedules"
ANCHOR = dt.datetime(2026, 1, 1, 0, 0, 7, tzinfo=dt.UTC)


def add_spec_task(session: Any, fields: dict[str, Any]) -> Task:
    """A task row as apply writes it from ``fields`` (a task file's document)."""
    spec = TaskSpec.model_validate({"owner": "billing", "task": "app.jobs.run", **fields})
    row = add_task(session, spec.name, owner=spec.owner, enabled=spec.enabled, task=spec.task)
    row.spec = spec.canonical()
    row.schedule_text = schedule_text(row.spec)
    row.timezone = spec.timezone
    row.source_path = f"tasks.d/{spec.name}.yaml"
    row.source_line = 2
    row.schedule_anchor = ANCHOR
    session.flush()
    return row


def seed(session: Any) -> None:
    """The standard seed, and tasks with labels, windows, an interval and secrets."""
    seed_standard(session)
    add_spec_task(
        session,
        {
            "name": "sync-ledger",
            "type": "periodic",
            "interval": "90m",
            "timezone": "Europe/Paris",
            "args": ["full"],
            "kwargs": {"password": "hunter2", "region": "eu"},
            "options": {"queue": "ledger"},
            "labels": {"team": "finance", 'a "quoted" name': "yes", "api_key": "k-123"},
            "overlap": "skip",
            "catchup": "once",
        },
    )
    add_spec_task(
        session,
        {
            "name": "spring-sale",
            "type": "periodic",
            "crontab": "0 9 * * *",
            "active": {"until": "2025-03-31"},
            "labels": {"team": "sales"},
        },
    )
    add_spec_task(
        session,
        {
            "name": "next-year",
            "type": "periodic",
            "crontab": "0 9 * * *",
            "active": {"from": "2099-01-01"},
            "enabled": False,
        },
    )
    now = dt.datetime.now(dt.UTC)
    add_execution(session, "sync-ledger", queued_at=now - dt.timedelta(minutes=2), worker="w-new")
    add_apply(session, at=T0 + dt.timedelta(hours=6)).git_commit = "feedc0ffee1234"
    session.flush()


@pytest.fixture(scope="module", params=BACKENDS)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    directory: Path = tmp_path_factory.mktemp("pageapi")
    (directory / "tokens.yaml").write_text(tokens_yaml())
    tokens = load_tokens(directory / "tokens.yaml")
    for url in backend_url(str(request.param), directory):
        database = Database.open(url)
        with database.session() as session:
            seed(session)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RECONCILER_REPOSITORY_URL", REPOSITORY + "/")
            app = create_app(database, tokens=tokens)
        with TestClient(app) as test_client:
            yield test_client
        database.dispose()


def names(client: TestClient, query: str, headers: dict[str, str] = ROOT) -> list[str]:
    response = client.get(f"/api/v1/tasks/?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_tasks_filter_by_last_status(client: TestClient) -> None:
    assert names(client, "last_status=failure") == ["daily-report"]
    assert names(client, "last_status=started") == ["ops-cleanup"]
    assert names(client, "last_status=success") == ["sync-ledger"]
    assert names(client, "last_status=never") == ["billing-async", "next-year", "spring-sale"]
    assert names(client, "last_status=never&enabled=false") == ["billing-async", "next-year"]
    # An owner's token: its own tasks and its own last runs only.
    assert names(client, "last_status=failure", OLGA) == []
    assert names(client, "last_status=started", OLGA) == ["ops-cleanup"]
    assert names(client, "last_status=failure", ALICE) == ["daily-report"]
    csv = client.get("/api/v1/tasks/?last_status=failure&format=csv", headers=ROOT).text
    assert len(csv.strip().splitlines()) == 2 and "daily-report" in csv
    bad = client.get("/api/v1/tasks/?last_status=broken", headers=ROOT)
    assert bad.status_code == 422
    assert bad.json()["message"] == (
        "last_status: 'broken' is not a last status; use pending, started, success, failure, "
        "retry, revoked, never"
    )


def test_tasks_filter_by_label(client: TestClient) -> None:
    assert names(client, "label=team") == ["spring-sale", "sync-ledger"]
    assert names(client, "label=team=finance") == ["sync-ledger"]
    assert names(client, "label=team=") == []
    assert names(client, "label=owner") == []
    assert names(client, 'label=a "quoted" name=yes') == ["sync-ledger"]
    # A secret-looking label's value is redacted where shown, so it cannot be probed.
    assert names(client, "label=api_key") == ["sync-ledger"]
    probe = client.get("/api/v1/tasks/?label=api_key=k-123", headers=ROOT)
    assert probe.status_code == 422
    assert probe.json()["message"].startswith("label: 'api_key' looks secret")
    assert names(client, "label=team&q=sale&sort=-name") == ["spring-sale"]
    assert names(client, "label=team=sales", ALICE) == ["spring-sale"]
    assert names(client, "label=team", OLGA) == []


def test_the_list_says_which_tasks_are_outside_their_window(client: TestClient) -> None:
    items = client.get("/api/v1/tasks/?limit=100", headers=ROOT).json()["items"]
    by_name = {item["name"]: item for item in items}
    assert by_name["spring-sale"]["in_window"] is False
    assert by_name["spring-sale"]["active"] == {"from": None, "until": "2025-03-31"}
    assert by_name["next-year"]["in_window"] is False
    assert by_name["sync-ledger"]["in_window"] is True
    assert by_name["sync-ledger"]["active"] is None


def test_overview_for_the_header(client: TestClient) -> None:
    view = client.get("/api/v1/overview", headers=ROOT).json()
    assert view["sync"]["state"] == "in_sync"
    assert view["sync"]["git_commit"] == "feedc0ffee1234"
    assert view["sync"]["last_applied_commit"] == "feedc0ffee1234"
    assert "errors" not in view["sync"]
    assert (view["beats"], view["beats_alive"]) == (1, 0)  # the seed's heartbeat is old
    assert view["workers_seen"] == ["w-new"]
    assert view["tasks"] == 6 and view["disabled"] == 2
    assert view["by_last_status"] == {"failure": 1, "started": 1, "success": 1, "never": 3}
    assert view["repository_url"] == REPOSITORY

    billing = client.get("/api/v1/overview", headers=ALICE).json()
    assert billing["tasks"] == 5
    assert billing["by_last_status"] == {"failure": 1, "success": 1, "never": 3}
    assert billing["workers_seen"] == ["w-new"]
    ops = client.get("/api/v1/overview", headers=OLGA).json()
    assert ops["tasks"] == 1 and ops["by_last_status"] == {"started": 1}
    assert ops["workers_seen"] == []
    assert client.get("/api/v1/overview").status_code == 401


def test_task_detail_for_its_page(client: TestClient) -> None:
    task = client.get("/api/v1/tasks/sync-ledger", headers=ALICE).json()
    assert task["args"] == ["full"]
    assert task["kwargs"] == {"password": "***", "region": "eu"}
    assert task["definition"]["kwargs"]["password"] == "***"
    assert task["options"]["queue"] == "ledger"
    assert task["labels"] == {"team": "finance", 'a "quoted" name': "yes", "api_key": "***"}
    assert (task["overlap"], task["catchup"]) == ("skip", "once")
    # Five fires counted from the stored anchor, every 90 minutes, as beat does.
    fires = [dt.datetime.fromisoformat(each) for each in task["next_fires"]]
    now = dt.datetime.now(dt.UTC)
    assert len(fires) == 5 and now - dt.timedelta(seconds=5) < fires[0] <= now + 90 * MINUTE
    for fire in fires:
        assert (fire - ANCHOR) % (90 * MINUTE) == dt.timedelta(0)
    assert [b - a for a, b in itertools.pairwise(fires)] == [90 * MINUTE] * 4
    assert task["source"] == {
        "path": "tasks.d/sync-ledger.yaml",
        "line": 2,
        "commit": "feedc0ffee1234",
        "commit_url": f"{REPOSITORY}/commit/feedc0ffee1234",
        "url": f"{REPOSITORY}/blob/feedc0ffee1234/tasks.d/sync-ledger.yaml#L2",
    }
    daily = client.get("/api/v1/tasks/daily-report", headers=ROOT).json()
    assert len(daily["next_fires"]) == 5
    assert all(each.endswith("T01:00:00+00:00") for each in daily["next_fires"])
    assert client.get("/api/v1/tasks/next-year", headers=ROOT).json()["next_fires"] == []
    assert client.get("/api/v1/tasks/spring-sale", headers=ROOT).json()["next_fires"] == []
    assert client.get("/api/v1/tasks/billing-async", headers=ROOT).json()["next_fires"] == []


MINUTE = dt.timedelta(minutes=1)


def test_a_bad_repository_url_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.errors import ConfigError
    from reconciler.settings import resolve_repository_url

    monkeypatch.setenv("RECONCILER_REPOSITORY_URL", "git@github.com:acme/schedules.git")
    with pytest.raises(ConfigError, match=r"^RECONCILER_REPOSITORY_URL: .* https://"):
        resolve_repository_url()
    monkeypatch.delenv("RECONCILER_REPOSITORY_URL")
    assert resolve_repository_url() is None
