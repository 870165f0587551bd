"""Spread, windows and calendars in the Beat tick, on SQLite and PostgreSQL with an
injected clock: what fires, what is skipped (counted, with its reason) and what is next."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from reconciler.beat.ticker import Ticker
from reconciler.store.database import Database
from tests.beatsupport import (
    Clock,
    FakePublisher,
    at,
    executions,
    put_task,
    run_until,
    spec,
    task_row,
)


def ticker_at(db: Database, start: dt.datetime) -> tuple[Ticker, FakePublisher, Clock]:
    clock = Clock(start)
    publisher = FakePublisher()
    return Ticker(db, publisher, clock=clock, batch=50), publisher, clock


def local(moments: list[dt.datetime | None], zone: str) -> list[str]:
    return [moment.astimezone(ZoneInfo(zone)).isoformat() if moment else "-" for moment in moments]


def test_calendar_dates_are_skipped_and_counted_across_a_year_end(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    start = at("2026-12-30T00:00:00+01:00")
    task = spec(
        "daily",
        crontab="0 12 * * *",
        timezone="Europe/Berlin",
        skip_on=["holidays"],
        calendars={"holidays": [{"every_year": "12-31"}, "2027-01-01"]},
    )
    put_task(db, task, start)
    ticker, publisher, clock = ticker_at(db, start)
    caplog.set_level("INFO")
    run_until(ticker, clock, at("2027-01-03T00:00:00+01:00"), lag=0.3)
    assert local(publisher.slots("daily"), "Europe/Berlin") == [
        "2026-12-30T12:00:00+01:00",
        "2027-01-02T12:00:00+01:00",
    ]
    assert [row.scheduled_for for row in executions(db, "daily")] == publisher.slots("daily")
    row = task_row(db, "daily")
    assert (row.calendar_skipped_count, row.skipped_count, row.missed_count) == (2, 0, 0)
    assert "2026-12-31 is on calendar holidays (skip_on)" in caplog.text
    assert "2027-01-01 is on calendar holidays (skip_on)" in caplog.text


def test_only_on_and_spread_across_a_dst_change(db: Database) -> None:
    start = at("2026-10-24T00:00:00+02:00")
    task = spec(
        "a",  # offset 2m23s of 10m
        crontab="30 2 * * *",
        timezone="Europe/Berlin",
        spread="10m",
        only_on=["weekend"],
        calendars={"weekend": ["2026-10-25", "2026-10-31", "2026-11-01"]},
    )
    put_task(db, task, start)
    ticker, publisher, clock = ticker_at(db, start)
    run_until(ticker, clock, at("2026-11-02T00:00:00+01:00"), lag=0.3)
    # the fall-back night's 02:30 fires once (the first), then the offset
    assert local(publisher.slots("a"), "Europe/Berlin") == [
        "2026-10-25T02:32:23+02:00",
        "2026-10-31T02:32:23+01:00",
        "2026-11-01T02:32:23+01:00",
    ]
    assert task_row(db, "a").calendar_skipped_count == 6  # Oct 24 and Oct 26-30


def test_a_window_opens_and_closes_across_a_dst_change(db: Database) -> None:
    start = at("2026-03-28T00:00:00+01:00")
    task = spec(
        "windowed",
        crontab="0 */6 * * *",
        timezone="Europe/Berlin",
        active={"from": "2026-03-29", "until": "2026-03-30T06:00"},
    )
    put_task(db, task, start)
    assert task_row(db, "windowed").next_run_at == at("2026-03-29T00:00:00+01:00")
    ticker, publisher, clock = ticker_at(db, start)
    run_until(ticker, clock, at("2026-04-01T00:00:00+02:00"), lag=0.3)
    # the spring-forward night: the elapsed-time crontab's 06:00 is 05:00 UTC as usual
    assert local(publisher.slots("windowed"), "Europe/Berlin") == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T06:00:00+02:00",
        "2026-03-29T12:00:00+02:00",
        "2026-03-29T18:00:00+02:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-30T06:00:00+02:00",
    ]
    row = task_row(db, "windowed")
    assert row.next_run_at is None
    assert (row.calendar_skipped_count, row.skipped_count, row.missed_count) == (0, 0, 0)


def test_interval_spread_keeps_its_period(db: Database) -> None:
    start = at("2026-06-01T00:00:00Z")
    put_task(db, spec("a", interval="1h", spread="10m"), start)
    ticker, publisher, clock = ticker_at(db, start)
    run_until(ticker, clock, at("2026-06-01T03:30:00Z"), lag=0.3)
    assert publisher.slots("a") == [
        at("2026-06-01T01:02:23Z"),
        at("2026-06-01T02:02:23Z"),
        at("2026-06-01T03:02:23Z"),
    ]
