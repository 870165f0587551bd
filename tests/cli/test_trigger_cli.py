"""``reconcile trigger NAME``: a manual execution recorded and sent to a real Redis broker."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import update

from reconciler.cli import main
from reconciler.store.database import Database
from reconciler.store.tables import Task
from tests.beatsupport import delete_task, executions, put_task, spec
from tests.cli.test_status_cli import store_spec_text

NOW = dt.datetime.now(dt.UTC)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["trigger", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def db_url(database_url: str) -> str:
    db = Database.open(database_url)
    put_task(
        db, spec("report", interval={"hours": 1}, args=["daily"], kwargs={"region": "eu"}), NOW
    )
    put_task(db, spec("old", interval={"hours": 1}), NOW)
    delete_task(db, "old", NOW)
    db.dispose()
    return database_url


def queued(redis_url: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    finally:
        client.close()


@pytest.mark.redis
def test_trigger_records_a_manual_execution_and_sends_it(db_url: str, redis_url: str) -> None:
    code, out, err = invoke("report", "--database-url", db_url, "--broker-url", redis_url)
    assert (code, err) == (0, "")
    db = Database.open(db_url)
    (row,) = executions(db, "report")
    db.dispose()
    assert out == f"Triggered report: celery task id {row.celery_task_id}\n"
    assert (row.trigger, row.status, row.scheduled_for) == ("manual", "pending", None)
    assert (row.args, row.kwargs) == (["daily"], {"region": "eu"})
    assert row.published_at is not None
    (message,) = queued(redis_url)
    headers = message["headers"]
    assert isinstance(headers, dict)
    assert headers["id"] == row.celery_task_id
    assert headers["task"] == "app.worker.test_celery"


@pytest.mark.redis
def test_trigger_with_arguments_replaces_the_tasks_own(db_url: str, redis_url: str) -> None:
    code, out, _ = invoke(
        "report",
        "--args",
        '["weekly", 2]',
        "--kwargs",
        '{"region": "us"}',
        "--format",
        "json",
        "--database-url",
        db_url,
        "--broker-url",
        redis_url,
    )
    assert code == 0
    printed = json.loads(out)
    assert printed["task"] == "report" and printed["trigger"] == "manual"
    db = Database.open(db_url)
    (row,) = executions(db, "report")
    db.dispose()
    assert (row.args, row.kwargs) == (["weekly", 2], {"region": "us"})
    assert printed["celery_task_id"] == row.celery_task_id


def test_an_unknown_task_exits_1_naming_it(db_url: str) -> None:
    code, _, err = invoke("nope", "--database-url", db_url, "--broker-url", "redis://127.0.0.1:1/0")
    assert code == 1
    assert err == "error: no task named 'nope'; `reconcile status` lists the tasks\n"


def test_a_deleted_task_exits_1_saying_so(db_url: str) -> None:
    code, _, err = invoke("old", "--database-url", db_url, "--broker-url", "redis://127.0.0.1:1/0")
    assert code == 1
    assert "task 'old' is deleted" in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--args", "[1,", "error: --args: not valid JSON (Expecting value at column 4)\n"),
        (
            "--args",
            '{"a": 1}',
            "error: --args: expected a JSON list, e.g. '[1, \"a\"]', got dict\n",
        ),
        (
            "--kwargs",
            "[]",
            "error: --kwargs: expected a JSON object, e.g. '{\"k\": 1}', got list\n",
        ),
    ],
)
def test_bad_json_exits_2_naming_the_flag(db_url: str, flag: str, value: str, message: str) -> None:
    code, _, err = invoke("report", flag, value, "--database-url", db_url)
    assert (code, err) == (2, message)


def test_an_unreachable_broker_exits_1_and_fails_the_row(sqlite_url: str) -> None:
    db = Database.open(sqlite_url)
    put_task(db, spec("report", interval={"hours": 1}), NOW)
    code, _, err = invoke(
        "report", "--database-url", sqlite_url, "--broker-url", "redis://127.0.0.1:1/0"
    )
    assert code == 1
    assert "could not send 'report' to the broker" in err
    (row,) = executions(db, "report")
    db.dispose()
    assert row.status == "failure"
    assert (row.error or "").startswith("not published: ")


@pytest.mark.redis
def test_a_disabled_task_is_refused_unless_forced(database_url: str, redis_url: str) -> None:
    db = Database.open(database_url)
    put_task(db, spec("paused", interval={"hours": 1}, enabled=False), NOW)
    db.dispose()
    urls = ("--database-url", database_url, "--broker-url", redis_url)
    code, out, err = invoke("paused", *urls)
    assert (code, out) == (1, "")
    assert err == (
        "error: task 'paused' is disabled (enabled: false in its task file), so it was not "
        "run; pass --force to run it once anyway (recorded as a manual run)\n"
    )
    db = Database.open(database_url)
    assert executions(db, "paused") == []
    assert queued(redis_url) == []
    code, out, err = invoke("paused", "--force", *urls)
    assert (code, err) == (0, "")
    (row,) = executions(db, "paused")
    db.dispose()
    assert out == (
        f"Triggered paused (disabled; run because of --force): celery task id "
        f"{row.celery_task_id}\n"
    )
    assert (row.trigger, row.status) == ("manual", "pending")
    (message,) = queued(redis_url)
    assert message["headers"]["id"] == row.celery_task_id  # type: ignore[index]


def test_a_stored_definition_this_version_refuses_exits_1_naming_the_task(db_url: str) -> None:
    db = Database.open(db_url)
    try:
        with db.session() as session:
            session.execute(
                update(Task)
                .where(Task.name == "report")
                .values(
                    spec={
                        **spec("report", interval={"hours": 1}).canonical(),
                        "timezone": "localtime",
                    }
                )
            )
    finally:
        db.dispose()
    code, _, err = invoke(
        "report", "--database-url", db_url, "--broker-url", "redis://127.0.0.1:1/0"
    )
    assert code == 1
    assert err.startswith("error: task 'report': its stored definition does not pass")
    assert "Traceback" not in err


def test_a_stored_definition_that_is_not_an_object_exits_1_and_records_nothing(
    db_url: str,
) -> None:
    store_spec_text(db_url, "report", '"report"')
    code, out, err = invoke(
        "report", "--database-url", db_url, "--broker-url", "redis://127.0.0.1:1/0"
    )
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: task 'report': its stored definition does not pass this version's checks "
        "(definition: "
    )
    assert err.endswith("); run `reconcile` to apply the task files again\n")
    db = Database.open(db_url)
    try:
        assert executions(db, "report") == []
    finally:
        db.dispose()
