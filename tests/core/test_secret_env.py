"""``{secret_env: NAME}`` values: validated with the task, stored and served as written,
resolved only in the message the publishing process sends (beat, ``reconcile trigger``),
and an unset variable is a failed execution saying which variable and which task."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from reconciler.beat.message import Message
from reconciler.beat.publisher import CeleryPublisher
from reconciler.beat.ticker import Ticker
from reconciler.cli import main
from reconciler.core.secretref import (
    MissingSecret,
    missing_names,
    reference_problems,
    refusal,
    resolve,
)
from reconciler.store.database import Database
from tests.beatsupport import Clock, FakePublisher, at, executions, put_task, run_until, spec
from tests.support import wait_for

T0 = at("2026-01-05T10:00:00Z")
REF = {"secret_env": "RECONCILER_TEST_DB_PASSWORD"}
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_TEST_DB_PASSWORD", raising=False)
    monkeypatch.delenv("RECONCILER_TEST_TOKEN", raising=False)


def test_resolve_replaces_references_at_any_depth_and_leaves_the_rest() -> None:
    value = {"db": {"password": REF}, "tokens": [{"secret_env": "RECONCILER_TEST_TOKEN"}], "n": 1}
    env = {"RECONCILER_TEST_DB_PASSWORD": "hunter2", "RECONCILER_TEST_TOKEN": "t0k"}
    assert resolve(value, env) == {"db": {"password": "hunter2"}, "tokens": ["t0k"], "n": 1}
    assert value["db"] == {"password": REF}
    plain = {"a": [1, {"b": 2}]}
    assert resolve(plain, {}) is plain


def test_resolve_names_every_missing_variable() -> None:
    value = [REF, {"x": {"secret_env": "RECONCILER_TEST_TOKEN"}}]
    with pytest.raises(MissingSecret) as info:
        resolve(value, {})
    assert info.value.names == ["RECONCILER_TEST_DB_PASSWORD", "RECONCILER_TEST_TOKEN"]
    assert missing_names(value, environ={"RECONCILER_TEST_TOKEN": ""}) == [
        "RECONCILER_TEST_DB_PASSWORD"
    ]


def test_refusal_says_which_variable_and_which_task() -> None:
    assert refusal("billing-export", [], {"p": REF}, {"RECONCILER_TEST_DB_PASSWORD": "x"}) is None
    reason = refusal("billing-export", [], {"p": REF}, {})
    assert reason is not None
    assert "'billing-export'" in reason and "RECONCILER_TEST_DB_PASSWORD" in reason


@pytest.mark.parametrize(
    ("value", "loc", "message"),
    [
        ({"p": {"secret_env": "1BAD"}}, ("p", "secret_env"), "must name an environment variable"),
        ({"p": {"secret_env": 5}}, ("p", "secret_env"), "must name an environment variable"),
        ([{"secret_env": "A B"}], (0, "secret_env"), "must name an environment variable"),
        ({"p": {"secret_env": "OK", "x": 1}}, ("p",), "takes no other keys, got 'x'"),
    ],
)
def test_malformed_references_are_located(value: Any, loc: tuple[Any, ...], message: str) -> None:
    ((found_loc, found, _hint),) = list(reference_problems(value))
    assert found_loc == loc and message in found


def test_validate_reports_a_malformed_reference_with_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tasks.d").mkdir()
    (tmp_path / "tasks.d" / "billing.yaml").write_text(
        "name: billing-export\nowner: billing\ntype: async\ntask: app.worker.test_celery\n"
        "kwargs:\n  db_password: {secret_env: BILLING-DB}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "tasks.d/billing.yaml:6:" in result.output
    assert "kwargs.db_password.secret_env: must name an environment variable" in result.output
    good = "kwargs:\n  db_password: {secret_env: BILLING_DB}\n"
    text = (tmp_path / "tasks.d" / "billing.yaml").read_text().split("kwargs:")[0] + good
    (tmp_path / "tasks.d" / "billing.yaml").write_text(text)
    assert CliRunner().invoke(main, ["validate"], catch_exceptions=False).exit_code == 0


def test_beat_records_an_unset_variable_on_the_execution_and_carries_on(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_TOKEN", "t0k")
    put_task(db, spec("needs-secret", interval={"seconds": 10}, kwargs={"db_password": REF}), T0)
    token = {"secret_env": "RECONCILER_TEST_TOKEN"}
    put_task(db, spec("has-secret", interval={"seconds": 10}, args=[token]), T0)
    publisher = FakePublisher()
    clock = Clock(T0)
    ticker = Ticker(db, publisher, clock=clock, batch=50)
    run_until(ticker, clock, T0 + dt.timedelta(seconds=30), lag=0.3)

    assert {m.name for m in publisher.sent} == {"has-secret"}
    assert len(publisher.sent) == 3
    # The message keeps the reference: only the Celery publisher resolves it.
    assert publisher.sent[0].args == [token]
    refused = executions(db, "needs-secret")
    assert len(refused) == 3
    for row in refused:
        assert row.status == "failure"
        assert row.kwargs == {"db_password": REF}
        assert row.error is not None
        assert "'needs-secret'" in row.error and "RECONCILER_TEST_DB_PASSWORD" in row.error
    assert {row.status for row in executions(db, "has-secret")} == {"pending"}


@pytest.mark.redis
def test_the_celery_publisher_sends_the_value_and_shows_only_the_reference(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_DB_PASSWORD", "hunter2")
    app = Celery("secret-test", broker=redis_url)
    publisher = CeleryPublisher(app)
    message = Message(
        "billing-export", "app.worker.test_celery", "id-1", [REF],
        {"db": {"password": REF}, "api_key": "literal-key"}, {}, None,
    )  # fmt: skip
    try:
        assert publisher.publish([message]) == ["id-1"]
    finally:
        publisher.close()
    (sent,) = queued(redis_url)
    args, kwargs, _ = json.loads(base64.b64decode(sent["body"]))
    assert args == ["hunter2"]
    assert kwargs == {"db": {"password": "hunter2"}, "api_key": "literal-key"}
    # What monitoring tools show: the reference, and literal secrets redacted.
    headers = sent["headers"]
    shown = headers["argsrepr"] + headers["kwargsrepr"]
    assert "hunter2" not in shown and "literal-key" not in shown
    assert "RECONCILER_TEST_DB_PASSWORD" in headers["kwargsrepr"]


def queued(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    finally:
        client.close()


@pytest.fixture
def trigger_db(database_url: str) -> str:
    db = Database.open(database_url)
    put_task(db, spec("billing-export", interval={"hours": 1}, kwargs={"db_password": REF}), NOW)
    db.dispose()
    return database_url


@pytest.mark.redis
def test_trigger_with_an_unset_variable_fails_the_execution_and_says_why(
    trigger_db: str, redis_url: str
) -> None:
    result = CliRunner().invoke(
        main, ["trigger", "billing-export", "--database-url", trigger_db, "--broker-url", redis_url]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "'billing-export'" in result.stderr and "RECONCILER_TEST_DB_PASSWORD" in result.stderr
    db = Database.open(trigger_db)
    (row,) = executions(db, "billing-export")
    db.dispose()
    assert row.status == "failure" and "RECONCILER_TEST_DB_PASSWORD" in (row.error or "")
    assert row.kwargs == {"db_password": REF}
    assert queued(redis_url) == []


@pytest.mark.redis
def test_trigger_resolves_from_its_own_environment_and_stores_the_reference(
    trigger_db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_DB_PASSWORD", "hunter2")
    result = CliRunner().invoke(
        main, ["trigger", "billing-export", "--database-url", trigger_db, "--broker-url", redis_url]
    )
    assert result.exit_code == 0, result.output
    db = Database.open(trigger_db)
    (row,) = executions(db, "billing-export")
    db.dispose()
    assert row.kwargs == {"db_password": REF}
    (sent,) = queued(redis_url)
    _, kwargs, _ = json.loads(base64.b64decode(sent["body"]))
    assert kwargs == {"db_password": "hunter2"}


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.redis
def test_a_real_beat_resolves_from_its_environment_and_the_worker_gets_the_value(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """Beat has the variable, the worker does not: the demo task echoes what it received,
    and the stored row keeps the reference. A task naming an unset variable fails each
    slot with the reason while the other keeps running."""
    from tests.beat.test_beat_e2e import worker
    from tests.beatsupport import beat_process as beat

    db = Database.open(postgres_url)
    start = dt.datetime.now(dt.UTC)
    echo = "app.api.tasks.demo_dynamic_task"
    visible = {"secret_env": "RECONCILER_E2E_VISIBLE"}
    put_task(db, spec("resolved", interval={"seconds": 1}, task=echo, kwargs={"v": visible}), start)
    unset = {"db_password": {"secret_env": "RECONCILER_E2E_UNSET"}}
    put_task(db, spec("unresolved", interval={"seconds": 1}, task=echo, kwargs=unset), start)
    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    consumer = worker(tmp_path, env)
    scheduler = beat(tmp_path, {**env, "RECONCILER_E2E_VISIBLE": "from-beat"}, "beat")

    def finished(name: str) -> list[Any]:
        return [row for row in executions(db, name) if row.status in ("success", "failure")]

    try:
        wait_for(lambda: len(finished("resolved")) >= 2, timeout=60, message="2 runs at the worker")
        wait_for(lambda: len(finished("unresolved")) >= 2, timeout=30, message="2 refusals")
    finally:
        scheduler.stop()
        consumer.stop()
    for row in finished("resolved"):
        assert row.status == "success"
        assert row.kwargs == {"v": visible}
        assert row.result["kwargs"] == {"v": "from-beat"}
    for row in finished("unresolved"):
        assert row.status == "failure" and row.published_at is None
        assert "'unresolved'" in row.error and "RECONCILER_E2E_UNSET" in row.error
    db.dispose()
