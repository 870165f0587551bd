"""Every apply attempt in the apply log, and the sync status read from it
(docs/plan-and-apply.md, "The apply log and sync status"): failures recorded by apply
and by the watch loop, shown by ``status``, ``doctor``, ``/api/v1/applies`` and
``/metrics``; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from reconciler.apply import InvalidTasks, MassDeleteRefused, reconcile
from reconciler.cli import main
from reconciler.errors import LockTimeout
from reconciler.ops.doctor import run_checks
from reconciler.ops.watch import Watcher, WatchOptions
from reconciler.settings import Settings
from reconciler.store import tasks as store
from reconciler.store.database import Database, alembic_config
from reconciler.store.reads.applies import sync_state
from reconciler.store.tables import ApplyRecord, Task
from reconciler.web import create_app
from reconciler.web.tokens import load_tokens
from tests.factories import task_yaml, write_tasks
from tests.test_apply import git
from tests.webseed import TOKENS, tokens_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

T0 = dt.datetime(2026, 12, 5, 13, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 12, 5, 14, 2, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def records(db: Database) -> list[ApplyRecord]:
    with db.session() as session:
        found = list(session.scalars(select(ApplyRecord).order_by(ApplyRecord.id)))
        session.expunge_all()
        return found


def live_names(db: Database) -> list[str]:
    with db.session() as session:
        query = select(Task.name).where(Task.deleted_at.is_(None)).order_by(Task.name)
        return list(session.scalars(query))


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def checkout(tmp_path: Path) -> tuple[Path, Path, str]:
    """A git checkout holding tasks.d with tasks a and b, committed."""
    repo = tmp_path / "repo"
    tasks = repo / "tasks.d"
    write_tasks(tasks, ["a", "b"])
    git(repo, "init", "-q")
    return repo, tasks, commit_all(repo, "tasks")


def break_files(tasks: Path) -> None:
    """Two errors: a minute out of range and an unknown field."""
    (tasks / "bad1.yaml").write_text(task_yaml("bad1", crontab="61 * * * *"))
    (tasks / "bad2.yaml").write_text(task_yaml("bad2", colour="red"))


def mend_files(tasks: Path) -> None:
    (tasks / "bad1.yaml").unlink()
    (tasks / "bad2.yaml").unlink()


# --- the apply log -----------------------------------------------------------------------


def test_migration_0005_marks_existing_applies_applied_and_downgrades(database_url: str) -> None:
    db = Database.open(database_url, upgrade=False)
    applies = sa.table(
        "applies",
        *(sa.column(c) for c in ("applied_at", "tasks_dir", "created_names", "duration_ms")),
        *(sa.column(c) for c in ("updated_names", "deleted_names", "created", "updated")),
        *(sa.column(c) for c in ("deleted", "unchanged")),
    )
    try:
        with db.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0004")
            connection.execute(
                sa.insert(applies),
                {
                    "applied_at": T0.replace(tzinfo=None),  # SQLite: UTC text without a zone
                    "tasks_dir": "tasks.d", "created_names": "[]", "updated_names": "[]",
                    "deleted_names": "[]", "duration_ms": 5, "created": 1, "updated": 0,
                    "deleted": 0, "unchanged": 0,
                },
            )  # fmt: skip
        assert db.upgrade() is True
        (old,) = records(db)
        assert (old.outcome, old.error_count, old.errors, old.attempts) == ("applied", 0, None, 1)
        assert old.last_attempt_at == old.applied_at == T0
        with db.session() as session:
            assert sync_state(session).in_sync
        with db.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0004")
            columns = {c["name"] for c in sa.inspect(connection).get_columns("applies")}
            assert not columns & {"outcome", "error_count", "errors", "attempts", "last_attempt_at"}
            indexes = {i["name"] for i in sa.inspect(connection).get_indexes("applies")}
            assert "ix_applies_outcome_id" not in indexes
        assert db.upgrade() is True
    finally:
        db.dispose()


def test_a_failed_apply_is_recorded_with_its_errors_and_a_repeat_is_folded(
    db: Database, tmp_path: Path
) -> None:
    repo, tasks, good = checkout(tmp_path)
    reconcile(db, tasks, now=T0)
    break_files(tasks)
    bad = commit_all(repo, "broken")
    with pytest.raises(InvalidTasks) as invalid:
        reconcile(db, tasks, now=T1)
    located = [str(d) for d in invalid.value.diagnostics]
    assert len(located) == 2 and all(re.match(r".+bad\d\.yaml:\d+:\d+: ", e) for e in located)
    applied, failed = records(db)
    assert (applied.outcome, applied.git_commit, applied.created) == ("applied", good, 2)
    assert (failed.outcome, failed.error_count, failed.errors) == ("invalid", 2, located)
    assert (failed.git_commit, failed.git_dirty, failed.tasks_dir) == (bad, False, str(tasks))
    assert (failed.applied_at, failed.last_attempt_at, failed.attempts) == (T1, T1, 1)
    assert live_names(db) == ["a", "b"]  # the apply's own transaction wrote nothing

    # The same failure again (a watch loop's resync): one row, its count and time move.
    with pytest.raises(InvalidTasks):
        reconcile(db, tasks, now=T1 + 5 * MINUTE)
    assert len(records(db)) == 2
    again = records(db)[-1]
    assert (again.id, again.attempts) == (failed.id, 2)
    assert (again.applied_at, again.last_attempt_at) == (T1, T1 + 5 * MINUTE)
    with db.session() as session:
        sync = sync_state(session)
    assert not sync.in_sync and sync.since == T1
    assert sync.line(T1 + 10 * MINUTE) == (
        f"OUT OF SYNC: 2 errors at {bad[:7]} since 14:02 UTC; last applied {good[:7]}"
    )
    assert sync.line(T1 + dt.timedelta(days=1)).endswith(
        f"since 2026-12-05 14:02 UTC; last applied {good[:7]}"
    )
    assert sync.errors() == located

    # Mended: the state is what was applied, so nothing changes, but the no-op is recorded
    # once, as the files being in sync again; the next no-op is not.
    mend_files(tasks)
    mended = commit_all(repo, "mended")
    result = reconcile(db, tasks, now=T1 + 20 * MINUTE)
    assert not result.plan and result.record_id is not None
    back = records(db)[-1]
    assert (back.outcome, back.git_commit, back.created, back.unchanged) == (
        "applied", mended, 0, 2,
    )  # fmt: skip
    assert reconcile(db, tasks).record_id is None and len(records(db)) == 3
    with db.session() as session:
        assert sync_state(session).line(T1) == f"in sync with {mended[:7]}"


def test_refusals_are_recorded_each_with_its_message(db: Database, tmp_path: Path) -> None:
    _, tasks, _ = checkout(tmp_path)
    write_tasks(tasks, ["c", "d"])
    reconcile(db, tasks, now=T0)
    for name in ("a", "b", "c"):
        (tasks / f"{name}.yaml").unlink()
    with pytest.raises(MassDeleteRefused) as refused:
        reconcile(db, tasks, now=T1)
    missing = tmp_path / "typo.d"
    with pytest.raises(MassDeleteRefused) as gone:
        reconcile(db, missing, now=T1 + MINUTE)
    mass, typo = records(db)[1:]
    assert (mass.outcome, mass.error_count, mass.errors) == ("refused", 1, [str(refused.value)])
    assert str(refused.value).startswith("the plan deletes 3 of 4 tasks (more than half")
    assert (typo.outcome, typo.errors, typo.git_commit) == ("refused", [str(gone.value)], None)
    assert live_names(db) == ["a", "b", "c", "d"]
    with db.session() as session:
        line = sync_state(session).line(T1 + MINUTE)
    assert line.startswith("OUT OF SYNC: apply refused since 14:02 UTC; last applied ")


def test_a_lock_timeout_is_recorded_as_failed_where_the_database_can_take_it(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL records it beside the held lock; SQLite has one writer, so the record
    waits briefly for the lock and, still held, is only logged (docs/plan-and-apply.md)."""
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    reconcile(db, tasks, now=T0)
    write_tasks(tasks, ["b"])
    holder = db.sessions()
    try:
        store.lock(holder, 5)
        caplog.set_level(logging.WARNING, logger="reconciler.apply")
        with pytest.raises(LockTimeout) as timeout:
            reconcile(db, tasks, lock_timeout=0.2, now=T1)
    finally:
        holder.rollback()
        holder.close()
    if db.dialect == "postgresql":
        failed = records(db)[-1]
        assert (failed.outcome, failed.errors, failed.applied_at) == (
            "failed", [str(timeout.value)], T1,
        )  # fmt: skip
        assert str(timeout.value).startswith("another reconciler held the apply lock")
    else:
        assert [r.outcome for r in records(db)] == ["applied"]
        assert "the failed apply could not be recorded in the apply log" in caplog.text
    reconcile(db, tasks, now=T1 + MINUTE)
    assert records(db)[-1].outcome == "applied" and live_names(db) == ["a", "b"]


def test_the_watch_loop_records_a_repeated_failure_once(database_url: str, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    watcher = Watcher(WatchOptions(tasks_dir=tasks, database_url=database_url))
    db = Database.open(database_url)
    try:
        assert watcher.cycle() is True
        break_files(tasks)
        for _ in range(3):
            assert watcher.cycle() is True
        applied, failed = records(db)
        assert (applied.outcome, failed.outcome, failed.error_count) == ("applied", "invalid", 2)
        assert failed.attempts == 3 and failed.last_attempt_at is not None
        assert failed.last_attempt_at >= failed.applied_at
        mend_files(tasks)
        assert watcher.cycle() is True
        assert [r.outcome for r in records(db)] == ["applied", "invalid", "applied"]
        assert watcher.cycle() is True and len(records(db)) == 3
    finally:
        watcher.stop()
        watcher.run()  # returns at once, closing its database
        db.dispose()


# --- shown everywhere --------------------------------------------------------------------


@dataclass(frozen=True)
class OutOfSync:
    url: str
    tasks: Path
    repo: Path
    good: str
    bad: str
    errors: list[str]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def out_of_sync(database_url: str, tmp_path: Path) -> OutOfSync:
    """Applied at one commit by the command line, then refused at the next (2 errors)."""
    repo, tasks, good = checkout(tmp_path)
    settings = ["--tasks-dir", str(tasks), "--database-url", database_url]
    assert run("apply", *settings).exit_code == 0
    break_files(tasks)
    bad = commit_all(repo, "broken")
    refused = run("apply", *settings)
    assert refused.exit_code == 1
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("error: ")]
    assert len(errors) == 2
    return OutOfSync(database_url, tasks, repo, good, bad, errors)


SINCE = r"since \d\d:\d\d UTC"


def test_status_opens_with_the_sync_line(out_of_sync: OutOfSync) -> None:
    state = out_of_sync
    text = run("status", "--database-url", state.url)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert re.fullmatch(
        f"OUT OF SYNC: 2 errors at {state.bad[:7]} {SINCE}; last applied {state.good[:7]}",
        lines[0],
    ), lines[0]
    assert lines[1:3] == [f"  {error}" for error in state.errors]

    data = json.loads(run("status", "--database-url", state.url, "--format", "json").stdout)
    sync = data["sync"]
    assert sync["state"] == "out_of_sync" and sync["line"] == lines[0]
    assert (sync["outcome"], sync["error_count"], sync["errors"]) == ("invalid", 2, state.errors)
    assert (sync["git_commit"], sync["last_applied_commit"]) == (state.bad, state.good)
    assert dt.datetime.fromisoformat(sync["since"]) <= dt.datetime.now(dt.UTC)

    mend_files(state.tasks)
    assert run("apply", "--tasks-dir", str(state.tasks), "--database-url", state.url).exit_code == 0
    first = run("status", "--database-url", state.url).stdout.splitlines()[0]
    assert first == f"in sync with {state.bad[:7]} (with local changes)"  # not committed
    data = json.loads(run("status", "--database-url", state.url, "--format", "json").stdout)
    assert data["sync"]["state"] == "in_sync" and data["sync"]["errors"] == []


def test_doctor_fails_the_sync_check_with_the_errors_and_the_fix(
    out_of_sync: OutOfSync, tmp_path: Path
) -> None:
    state = out_of_sync
    broker = f"sqla+sqlite:///{tmp_path}/broker.db"
    settings = Settings.resolve(state.tasks, state.url, broker, "reconciler.demo:app")
    checks = {c.name: c for c in run_checks(settings, timeout=0.5)}
    sync = checks["sync"]
    assert sync.status == "fail"
    assert sync.message.startswith(f"OUT OF SYNC: 2 errors at {state.bad[:7]} since ")
    assert sync.details == state.errors
    assert sync.fix is not None and sync.fix.startswith("fix the errors in the task files")

    args = ["doctor", "--database-url", state.url, "--broker-url", broker, "--timeout", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "✗ sync        OUT OF SYNC: 2 errors at " in result.output
    assert f"              - {state.errors[0]}" in result.output
    assert "              fix: fix the errors in the task files" in result.output
    report = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).output)
    assert next(c for c in report["checks"] if c["name"] == "sync")["status"] == "fail"

    mend_files(state.tasks)
    commit_all(state.repo, "mended")
    assert run("apply", "--tasks-dir", str(state.tasks), "--database-url", state.url).exit_code == 0
    mended = {c.name: c for c in run_checks(settings, timeout=0.5)}["sync"]
    assert mended.status == "ok" and mended.message.startswith("in sync with ")


@pytest.fixture
def api(out_of_sync: OutOfSync, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    database = Database.open(out_of_sync.url)
    tokens = load_tokens(tmp_path / "tokens.yaml")
    with TestClient(create_app(database, tokens=tokens)) as client:
        client.headers["Authorization"] = f"Bearer {TOKENS['root']}"
        yield client
    database.dispose()


def test_the_api_serves_attempts_with_their_outcome_and_filters_them(
    api: TestClient, out_of_sync: OutOfSync
) -> None:
    state = out_of_sync
    items = api.get("/api/v1/applies").json()["items"]
    assert [(i["outcome"], i["git_commit"]) for i in items] == [
        ("invalid", state.bad), ("applied", state.good),
    ]  # fmt: skip
    failed = items[0]
    assert (failed["error_count"], failed["errors"], failed["attempts"]) == (2, state.errors, 1)
    assert failed["last_attempt_at"] == failed["applied_at"]
    assert (failed["created"], failed["created_names"], failed["tasks_dir"]) == (
        0, [], str(state.tasks),
    )  # fmt: skip
    assert items[1]["errors"] == [] and items[1]["error_count"] == 0

    def outcomes(query: str) -> list[str]:
        response = api.get(f"/api/v1/applies?{query}")
        assert response.status_code == 200, response.text
        return [item["outcome"] for item in response.json()["items"]]

    assert outcomes("outcome=invalid") == ["invalid"]
    assert outcomes("outcome=applied") == ["applied"]
    assert outcomes("outcome=refused,failed") == []
    assert outcomes("outcome=invalid,refused,failed") == ["invalid"]
    bad = api.get("/api/v1/applies?outcome=broken")
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("outcome: 'broken' is not an outcome; use applied")

    # An owner's token sees the outcome and the count, not errors naming anyone's files.
    owner = api.get(
        "/api/v1/applies?outcome=invalid",
        headers={"Authorization": f"Bearer {TOKENS['alice']}"},
    ).json()["items"]
    assert [(i["outcome"], i["error_count"], i["errors"]) for i in owner] == [("invalid", 2, [])]


def metric_values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_metrics_tell_the_last_attempt_the_last_success_and_whether_in_sync(
    api: TestClient, out_of_sync: OutOfSync
) -> None:
    items = api.get("/api/v1/applies").json()["items"]
    attempted, applied = (dt.datetime.fromisoformat(i["applied_at"]) for i in items)
    values = metric_values(api.get("/metrics").text)
    assert values["reconciler_files_in_sync"] == 0
    assert values["reconciler_apply_last_attempt_timestamp_seconds"] == attempted.timestamp()
    assert values["reconciler_apply_last_success_timestamp_seconds"] == applied.timestamp()
    # The last apply's counts are those of the last attempt that applied.
    assert values["reconciler_last_apply_timestamp_seconds"] == applied.timestamp()

    mend_files(out_of_sync.tasks)
    args = ["apply", "--tasks-dir", str(out_of_sync.tasks), "--database-url", out_of_sync.url]
    assert run(*args).exit_code == 0
    newest = dt.datetime.fromisoformat(api.get("/api/v1/applies").json()["items"][0]["applied_at"])
    values = metric_values(api.get("/metrics").text)
    assert values["reconciler_files_in_sync"] == 1
    assert values["reconciler_apply_last_success_timestamp_seconds"] == newest.timestamp()
    assert values["reconciler_apply_last_attempt_timestamp_seconds"] == newest.timestamp()
