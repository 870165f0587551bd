"""The alert notifier on SQLite and PostgreSQL, with an injected clock and a real HTTP
receiver: each condition fired and resolved through the database, each alert sent once
by two notifiers, and a refused send tried again with backoff until it goes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from reconciler.beat.notifier import Notifier, backoff
from reconciler.beat.ticker import Ticker
from reconciler.core.spec import TaskSpec
from reconciler.store.database import Database
from reconciler.store.tables import Alert, NotifyTarget, Task
from tests.alertreceiver import Receiver
from tests.beatsupport import (
    Clock,
    FakePublisher,
    put_task,
    run_until,
    set_status,
    spec,
    task_row,
)
from tests.support import wait_for
from tests.webseed import add_execution

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def watched(db: Database, receiver: Receiver, fmt: str = "json") -> Notifier:
    with db.session() as session:
        session.execute(
            insert(NotifyTarget).values(
                owner="team", webhook_url_env="TEAM_HOOK", format=fmt, updated_at=T0
            )
        )
    return Notifier(db, environ={"TEAM_HOOK": receiver.url})


def task(db: Database, alerts: dict[str, Any], name: str = "nightly", **fields: Any) -> TaskSpec:
    task_spec = spec(name, alerts=alerts, **fields)
    put_task(db, task_spec, T0)
    return task_spec


def execution(db: Database, status: str, at: dt.datetime, **fields: Any) -> int:
    with db.session() as session:
        row = add_execution(session, "nightly", status=status, queued_at=at, **fields)
        return int(row.id)


def test_on_failure_sends_each_failure_once_redacted_and_resolves_on_success(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    task(db, {"on_failure": True})
    first = execution(
        db, "failure", T0, kwargs={"password": "hunter2", "n": 1}, error="boom token=abc"
    )
    notifier.run_once(T0 + 10 * S)
    [firing] = receiver.received("firing")
    assert firing["condition"] == "on_failure" and firing["task"] == "nightly"
    assert firing["details"]["execution"]["id"] == first
    assert firing["details"]["execution"]["kwargs"] == {"password": "***", "n": 1}
    assert "hunter2" not in str(firing) and "abc" not in str(firing)
    notifier.run_once(T0 + 20 * S)
    assert len(receiver.bodies) == 1
    second = execution(db, "failure", T0 + 30 * S)
    third = execution(db, "failure", T0 + 31 * S)
    notifier.run_once(T0 + 40 * S)
    ids = [body["details"]["execution"]["id"] for body in receiver.received("firing")]
    assert ids == [first, second, third]
    execution(db, "success", T0 + 50 * S)
    notifier.run_once(T0 + 60 * S)
    [resolved] = receiver.received("resolved")
    # The newest failure's alert resolves; the older ones were superseded silently.
    assert resolved["alert_id"] == receiver.received("firing")[-1]["alert_id"]
    assert resolved["resolution"] == "cleared"


def test_failures_in_a_row_fires_once_at_the_threshold_and_resolves(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver, fmt="slack")
    task(db, {"failures_in_a_row": 2})
    execution(db, "failure", T0)
    notifier.run_once(T0 + 10 * S)
    assert receiver.bodies == []
    for n in range(3):
        execution(db, "failure", T0 + (20 + n) * S)
        notifier.run_once(T0 + (30 + n) * S)
    [firing] = receiver.bodies
    assert firing["text"].startswith(":rotating_light: *FIRING* `nightly` (failures_in_a_row)")
    execution(db, "success", T0 + 40 * S)
    notifier.run_once(T0 + 50 * S)
    assert receiver.bodies[1]["text"].startswith(":white_check_mark: *RESOLVED* `nightly`")


def test_success_within_fires_after_the_deadline_and_resolves_on_a_success(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    task(db, {"success_within": "1h"})
    notifier.run_once(T0 + dt.timedelta(minutes=59))
    assert receiver.bodies == []
    notifier.run_once(T0 + dt.timedelta(minutes=61))
    [firing] = receiver.received("firing")
    assert firing["condition"] == "success_within"
    assert firing["since"] == (T0 + dt.timedelta(hours=1)).isoformat()
    notifier.run_once(T0 + dt.timedelta(minutes=62))
    assert len(receiver.bodies) == 1
    execution(db, "success", T0 + dt.timedelta(minutes=63))
    notifier.run_once(T0 + dt.timedelta(minutes=64))
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]


def test_max_duration_fires_for_a_long_run_and_resolves_when_it_ends(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    task(db, {"max_duration": "30m"})
    run = execution(db, "started", T0)  # started 1 s after T0
    notifier.run_once(T0 + dt.timedelta(minutes=30))
    assert receiver.bodies == []
    notifier.run_once(T0 + dt.timedelta(minutes=31))
    [firing] = receiver.received("firing")
    assert firing["condition"] == "max_duration"
    assert firing["details"]["execution"]["id"] == run
    with db.session() as session:
        from reconciler.store.tables import TaskExecution

        session.execute(
            update(TaskExecution)
            .where(TaskExecution.id == run)
            .values(status="success", finished_at=T0 + dt.timedelta(minutes=32))
        )
    notifier.run_once(T0 + dt.timedelta(minutes=33))
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]


def test_missed_is_silent_about_history_and_fires_per_new_miss_until_a_slot_fires(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    task(db, {"missed": True})
    with db.session() as session:
        session.execute(update(Task).values(missed_count=3))
    notifier.run_once(T0 + S)
    assert receiver.bodies == []  # the 3 were missed before: a baseline, not an alert
    with db.session() as session:
        session.execute(update(Task).values(missed_count=4, skipped_count=1))
    notifier.run_once(T0 + 2 * S)
    [firing] = receiver.received("firing")
    assert firing["summary"] == "nightly: 1 slot(s) missed and 1 slot(s) skipped"
    # A restarted notifier knows the counts from the database: nothing new.
    restarted = Notifier(db, environ={"TEAM_HOOK": receiver.url})
    restarted.run_once(T0 + 3 * S)
    assert len(receiver.bodies) == 1
    with db.session() as session:
        session.execute(update(Task).values(last_run_at=T0 + 4 * S))
    restarted.run_once(T0 + 5 * S)
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]


def on_holidays(
    db: Database, start: dt.datetime, **fields: Any
) -> tuple[Clock, FakePublisher, Ticker]:
    """``nightly`` at 09:30 UTC, off on Dec 25 and 26, alerting on missed slots, and a
    beat on a clock at ``start`` publishing to a ``FakePublisher``."""
    holiday = spec(
        "nightly",
        crontab="30 9 * * *",
        skip_on=["holidays"],
        calendars={"holidays": [{"from": "2026-12-25", "until": "2026-12-26"}]},
        alerts={"missed": True},
        **fields,
    )
    put_task(db, holiday, start)
    clock, publisher = Clock(start), FakePublisher()
    return clock, publisher, Ticker(db, publisher, clock=clock)


def test_calendar_drops_raise_no_missed_alert_but_overlap_skips_and_missed_slots_do(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    start = dt.datetime(2026, 12, 24, 9, 0, tzinfo=dt.UTC)
    clock, publisher, ticker = on_holidays(db, start, overlap="skip")
    notifier.run_once(start)  # first sight: the baseline
    for day in range(5):  # Dec 24 to 28: the 25th and 26th are dropped
        run_until(ticker, clock, start + dt.timedelta(days=day, hours=1), lag=0.3)
        notifier.run_once(clock.now)
        if day < 4:  # each run ends before the next slot; the 28th's is left running
            for message in publisher.sent:
                set_status(db, message.task_id, "success")
    row = task_row(db, "nightly")
    assert (row.calendar_skipped_count, row.skipped_count, row.missed_count) == (2, 0, 0)
    assert receiver.bodies == []
    # the 29th comes due while the 28th's run is unfinished: an overlap skip alerts
    run_until(ticker, clock, start + dt.timedelta(days=5, hours=1), lag=0.3)
    notifier.run_once(clock.now)
    assert [b["summary"] for b in receiver.received("firing")] == ["nightly: 1 slot(s) skipped"]
    # beat away for two days: the slots it missed alert too
    set_status(db, publisher.sent[-1].task_id, "success")
    clock.now = start + dt.timedelta(days=7, hours=1)  # Dec 30 and 31 missed
    ticker.tick(clock.now)
    notifier.run_once(clock.now)
    assert [b["summary"] for b in receiver.received("firing")][1:] == ["nightly: 2 slot(s) missed"]
    row = task_row(db, "nightly")
    assert (row.calendar_skipped_count, row.skipped_count, row.missed_count) == (2, 1, 2)


def test_beat_away_across_holidays_misses_the_working_days_and_drops_the_holidays(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    start = dt.datetime(2026, 12, 23, 9, 0, tzinfo=dt.UTC)
    clock, publisher, ticker = on_holidays(db, start)
    notifier.run_once(start)  # first sight: the baseline
    run_until(ticker, clock, start + dt.timedelta(hours=1), lag=0.3)  # the 23rd's run
    # beat away until the 28th 09:00: the 24th and 27th missed, the 25th and 26th dropped
    clock.now = start + dt.timedelta(days=5)
    ticker.tick(clock.now)
    notifier.run_once(clock.now)
    row = task_row(db, "nightly")
    assert (row.calendar_skipped_count, row.skipped_count, row.missed_count) == (2, 0, 2)
    assert row.next_run_at == start + dt.timedelta(days=5, minutes=30)
    [firing] = receiver.received("firing")
    assert firing["summary"] == "nightly: 2 slot(s) missed"
    assert (firing["details"]["newly_missed"], firing["details"]["newly_skipped"]) == (2, 0)
    # the 28th fires on time, which resolves the alert
    run_until(ticker, clock, start + dt.timedelta(days=5, hours=1), lag=0.3)
    notifier.run_once(clock.now)
    slots = [start + dt.timedelta(days=day, minutes=30) for day in (0, 5)]
    assert [m.scheduled_for for m in publisher.sent] == slots
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]


def test_two_notifiers_send_each_alert_once(db: Database, receiver: Receiver) -> None:
    first = watched(db, receiver)
    second = Notifier(db, environ={"TEAM_HOOK": receiver.url})
    for n in range(5):
        task(db, {"on_failure": True, "success_within": "1h"}, name=f"t{n}")
        with db.session() as session:
            add_execution(session, f"t{n}", status="failure", queued_at=T0)
    for minute in (1, 2, 61, 62):
        now = T0 + dt.timedelta(minutes=minute)
        first.evaluate(now)
        second.evaluate(now)
        second.send_due(now)
        first.send_due(now)
    keys = [(b["task"], b["condition"], b["status"]) for b in receiver.bodies]
    assert len(keys) == len(set(keys)) == 10


def test_a_refused_send_is_retried_with_backoff_and_kept_until_sent(
    db: Database, receiver: Receiver
) -> None:
    notifier = watched(db, receiver)
    task(db, {"on_failure": True})
    execution(db, "failure", T0)
    receiver.mode = "fail"
    now = T0 + 10 * S
    notifier.run_once(now)
    assert receiver.requests == 1 and receiver.bodies == []
    notifier.run_once(now + backoff(0) - S)  # not due yet: not tried
    assert receiver.requests == 1
    notifier.run_once(now + backoff(0))
    assert receiver.requests == 2
    with db.session() as session:
        attempts, error = session.execute(select(Alert.attempts, Alert.last_error)).one()
    assert attempts == 2 and "TEAM_HOOK: answered 503" in (error or "")
    receiver.mode = "ok"
    notifier.run_once(now + backoff(0) + backoff(1))
    assert len(receiver.received("firing")) == 1
    with db.session() as session:
        assert session.scalar(select(Alert.next_try_at)) is None


def test_an_unset_webhook_variable_keeps_the_alert_and_names_the_variable(
    db: Database, receiver: Receiver
) -> None:
    watched(db, receiver)
    notifier = Notifier(db, environ={})
    task(db, {"on_failure": True})
    execution(db, "failure", T0)
    notifier.run_once(T0 + 10 * S)
    with db.session() as session:
        error = session.scalar(select(Alert.last_error))
    assert error == "TEAM_HOOK: the environment variable TEAM_HOOK is not set"
    Notifier(db, environ={"TEAM_HOOK": receiver.url}).run_once(T0 + 20 * S)
    assert len(receiver.received("firing")) == 1


def test_the_notifier_thread_sends_from_its_own_sessions(db: Database, receiver: Receiver) -> None:
    watched(db, receiver)
    notifier = Notifier(db, environ={"TEAM_HOOK": receiver.url}, every=dt.timedelta(seconds=0.1))
    now = dt.datetime.now(dt.UTC)
    put_task(db, spec("nightly", alerts={"on_failure": True}), now)
    notifier.start()
    try:
        execution(db, "failure", now)
        wait_for(lambda: receiver.received("firing"), timeout=10, message="the alert")
    finally:
        notifier.stop()
    assert notifier.stats.sent == 1 and notifier.stats.last_error is None
