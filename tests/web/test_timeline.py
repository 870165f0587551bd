"""``GET /api/v1/timeline`` in-process on SQLite and PostgreSQL, with the app's clock set:
slots per bucket ahead, executions per bucket behind, each token seeing its own owner's."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from reconciler.store.database import Database
from reconciler.web import create_app
from reconciler.web.timeline import RECOUNT
from reconciler.web.tokens import load_tokens
from tests.webseed import BACKENDS, TOKENS, add_execution, add_task, backend_url, tokens_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

NOW = dt.datetime(2026, 3, 2, 10, 7, 30, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
AS = {name: {"Authorization": f"Bearer {token}"} for name, token in TOKENS.items()}


def ran(
    session: Session,
    name: str,
    owner: str,
    slot: dt.datetime,
    *,
    queued: dt.timedelta = S,
    started: dt.timedelta | None = None,
    trigger: str = "schedule",
) -> None:
    """An execution of ``name``'s ``slot``, queued and started that long after it."""
    row = add_execution(
        session, name, status="pending" if started is None else "success", flush=False
    )
    row.trigger = trigger
    row.scheduled_for = slot if trigger == "schedule" else None
    row.queued_at = slot + queued
    row.started_at = None if started is None else slot + started
    row.owner = owner
    session.flush()


def seed(session: Session) -> None:
    soon = NOW + dt.timedelta(minutes=1)
    add_task(session, "hourly-a", crontab="0 * * * *", next_run_at=soon)
    add_task(session, "hourly-b", crontab="0 * * * *", next_run_at=soon)
    add_task(session, "quarterly", crontab="*/15 * * * *", next_run_at=soon)
    add_task(session, "switched-off", crontab="* * * * *", enabled=False)
    add_task(session, "gone", crontab="* * * * *", next_run_at=soon, deleted_at=NOW)
    add_task(session, "ops-minutely", owner="ops", crontab="* * * * *", next_run_at=soon)
    nine, ten = NOW.replace(hour=9, minute=0, second=0), NOW.replace(minute=0, second=0)
    ran(session, "hourly-a", "billing", nine, started=5 * S)
    ran(session, "hourly-b", "billing", nine)  # queued, never started
    ran(session, "quarterly", "billing", ten, started=3 * S, queued=2 * S)
    ran(session, "hourly-a", "billing", ten, started=S)
    ran(session, "hourly-a", "billing", nine - dt.timedelta(hours=2), started=S)  # before
    ran(session, "hourly-a", "billing", ten + S, trigger="manual", started=2 * S)  # no slot
    ran(session, "ops-minutely", "ops", nine, started=60 * S)


@pytest.fixture(scope="module", params=BACKENDS)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("timeline")
    (directory / "tokens.yaml").write_text(tokens_yaml())
    for url in backend_url(str(request.param), directory):
        database = Database.open(url)
        with database.session() as session:
            seed(session)
        app = create_app(database, tokens=load_tokens(directory / "tokens.yaml"))
        app.state.clock = lambda: NOW
        with TestClient(app) as test_client:
            yield test_client
        database.dispose()


def timeline(client: TestClient, who: str, query: str = "hours=2") -> dict[str, Any]:
    response = client.get(f"/api/v1/timeline?{query}", headers=AS[who])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def counts(buckets: list[dict[str, Any]], key: str) -> dict[str, int]:
    return {bucket["at"][11:16]: bucket[key] for bucket in buckets if bucket[key]}


def test_the_next_hours_slots_per_bucket(client: TestClient) -> None:
    body = timeline(client, "alice")
    assert (body["now"], body["hours"], body["bucket_seconds"]) == (NOW.isoformat(), 2, 300)
    assert body["tasks"] == 3 and body["unreadable"] == 0
    coming = body["next"]
    assert (coming["from"], coming["until"]) == (NOW.isoformat(), "2026-03-02T12:07:30+00:00")
    quarters = {f"{h:02d}:{m:02d}": 1 for h in (10, 11, 12) for m in (0, 15, 30, 45)}
    del quarters["10:00"], quarters["12:15"], quarters["12:30"], quarters["12:45"]
    assert counts(coming["buckets"], "slots") == {**quarters, "11:00": 3, "12:00": 3}
    assert coming["slots"] == 8 + 4
    eleven = next(b for b in coming["buckets"] if b["at"] == "2026-03-02T11:00:00+00:00")
    assert eleven["tasks"] == 3
    assert eleven["top"] == [
        {"name": "hourly-a", "slots": 1},
        {"name": "hourly-b", "slots": 1},
        {"name": "quarterly", "slots": 1},
    ]


def test_the_last_hours_planned_against_started(client: TestClient) -> None:
    last = timeline(client, "alice")["last"]
    # since 08:05 (two hours back, at the start of its bucket) until now
    assert (last["from"], last["until"]) == ("2026-03-02T08:05:00+00:00", NOW.isoformat())
    assert counts(last["buckets"], "planned") == {"09:00": 2, "10:00": 2}
    assert counts(last["buckets"], "started") == {"09:00": 1, "10:00": 2}
    quarters = {f"{h:02d}:{m:02d}": 1 for h in (8, 9, 10) for m in (0, 15, 30, 45)}
    del quarters["08:00"], quarters["10:15"], quarters["10:30"], quarters["10:45"]
    assert counts(last["buckets"], "expected") == {**quarters, "09:00": 3, "10:00": 3}
    assert (last["expected"], last["planned"], last["started"]) == (12, 4, 3)
    by_time = {bucket["at"][11:16]: bucket for bucket in last["buckets"]}
    assert by_time["09:00"]["start_late_max_ms"] == 5000
    assert by_time["09:00"]["start_late_avg_ms"] == 5000
    assert by_time["09:00"]["queue_late_max_ms"] == 1000
    assert by_time["10:00"]["start_late_avg_ms"] == 2000
    assert by_time["10:00"]["start_late_max_ms"] == 3000
    assert by_time["10:00"]["queue_late_max_ms"] == 2000
    assert by_time["08:15"]["planned"] == 0 and by_time["08:15"]["start_late_max_ms"] is None


def test_each_token_sees_its_owners_tasks_and_executions(client: TestClient) -> None:
    ops = timeline(client, "olga")
    assert ops["tasks"] == 1
    assert ops["next"]["slots"] == 120
    assert {name["name"] for b in ops["next"]["buckets"] for name in b["top"]} == {"ops-minutely"}
    assert counts(ops["last"]["buckets"], "planned") == {"09:00": 1}
    assert ops["last"]["buckets"][0]["start_late_max_ms"] is None  # 08:05: expected only
    root = timeline(client, "root")
    assert root["tasks"] == 4
    assert root["next"]["slots"] == 120 + 12
    assert counts(root["last"]["buckets"], "planned") == {"09:00": 3, "10:00": 2}
    nine = next(b for b in root["last"]["buckets"] if b["at"].endswith("09:00:00+00:00"))
    assert nine["start_late_max_ms"] == 60_000
    eleven = next(b for b in root["next"]["buckets"] if b["at"].endswith("11:00:00+00:00"))
    assert eleven["slots"] == 5 + 3 and eleven["tasks"] == 4
    assert eleven["top"][0] == {"name": "ops-minutely", "slots": 5}


def test_bucket_size_and_hours(client: TestClient) -> None:
    body = timeline(client, "root", "hours=24&bucket=3600")
    assert body["bucket_seconds"] == 3600
    assert len(body["next"]["buckets"]) == 25  # 10:00 (after 10:07:30) to 10:00 next day
    assert body["next"]["slots"] == 24 * 60 + 24 * (2 + 4)
    assert body["last"]["from"] == "2026-03-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("hours=0", "hours"), ("hours=49", "hours"), ("bucket=90", "bucket"), ("bucket=30", "bucket")],
)
def test_wrong_parameters_are_named(client: TestClient, query: str, parameter: str) -> None:
    response = client.get(f"/api/v1/timeline?{query}", headers=AS["root"])
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{parameter}: ")


def test_it_needs_a_token_and_keeps_its_answer_for_a_while(client: TestClient) -> None:
    assert client.get("/api/v1/timeline").status_code == 401
    first = timeline(client, "alice")
    app: Any = client.app
    app.state.clock = lambda: NOW + dt.timedelta(seconds=5)  # the same cache window
    try:
        assert timeline(client, "alice") == first
        app.state.clock = lambda: NOW + dt.timedelta(hours=1)
        later = timeline(client, "alice")
        assert later["now"] == (NOW + dt.timedelta(hours=1)).isoformat()
        assert later["next"]["slots"] == 8 + 4  # 11:15 .. 13:00 quarters, 12:00 and 13:00 hourly
    finally:
        app.state.clock = lambda: NOW


def test_settled_buckets_are_kept_and_counted_again_in_time(client: TestClient) -> None:
    """Rows for slots older than SETTLE are not read again until RECOUNT has passed; the
    recent ones are read on every answer. Ten days on, away from the other tests' rows."""
    later = NOW + dt.timedelta(days=10)
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    writer = Database.open(database.engine.url.render_as_string(hide_password=False))
    app = create_app(database, tokens=client.app.state.tokens)  # type: ignore[attr-defined]
    clock = [later]
    app.state.clock = lambda: clock[0]

    def add(slot: dt.datetime) -> None:
        with writer.session() as session:
            ran(session, "ops-minutely", "ops", slot, started=S)

    def planned() -> dict[str, int]:
        return counts(timeline(second, "olga")["last"]["buckets"], "planned")

    try:
        with TestClient(app) as second:
            add(later - dt.timedelta(minutes=60))  # 09:07: settled
            add(later - dt.timedelta(minutes=2))  # 10:05: recent
            assert planned() == {"09:05": 1, "10:05": 1}
            add(later - dt.timedelta(minutes=59))
            add(later - dt.timedelta(minutes=1))
            clock[0] = later + dt.timedelta(seconds=40)  # the answer is 30 s old: counted again
            assert planned() == {"09:05": 1, "10:05": 2}
            clock[0] = later + RECOUNT + dt.timedelta(minutes=1)  # since 09:05 again
            assert planned() == {"09:05": 2, "10:05": 2}
    finally:
        writer.dispose()
