"""The pure decision for one due slot (reconciler.core.firing): catch-up, overlap, one-off types."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from reconciler.core.firing import Decision, decide, missed_slots
from reconciler.core.schedule import next_fire_times
from tests.beatsupport import at, spec

GRACE = dt.timedelta(seconds=60)


def test_a_slot_on_time_fires_and_moves_one_interval_on() -> None:
    task = spec(interval={"seconds": 10})
    slot = at("2026-01-01T10:00:00Z")
    decision = decide(task, slot, slot - dt.timedelta(seconds=10), slot, running=False)
    assert decision == Decision(slot, at("2026-01-01T10:00:10Z"))


def test_a_slot_just_within_the_grace_still_fires() -> None:
    task = spec(interval={"seconds": 10})
    slot = at("2026-01-01T10:00:00Z")
    decision = decide(task, slot, slot, slot + GRACE, running=False, grace=GRACE)
    assert decision.fire == slot
    assert decision.missed == 0


def test_catchup_skip_drops_every_missed_slot_and_counts_them() -> None:
    task = spec(interval={"seconds": 10}, catchup="skip")
    anchor = at("2026-01-01T09:59:50Z")
    slot = at("2026-01-01T10:00:00Z")
    now = at("2026-01-01T10:05:00Z")  # slots before 10:04:00 are missed
    decision = decide(task, slot, anchor, now, running=False, grace=GRACE)
    assert decision == Decision(None, at("2026-01-01T10:04:00Z"), missed=24)


def test_catchup_once_fires_the_latest_missed_slot_once() -> None:
    task = spec(interval={"seconds": 10}, catchup="once")
    anchor = at("2026-01-01T09:59:50Z")
    slot = at("2026-01-01T10:00:00Z")
    now = at("2026-01-01T10:05:00Z")
    decision = decide(task, slot, anchor, now, running=False, grace=GRACE)
    assert decision == Decision(at("2026-01-01T10:03:50Z"), at("2026-01-01T10:04:00Z"), missed=23)


def test_a_missed_crontab_slot_is_dropped_and_the_next_future_one_kept() -> None:
    task = spec(crontab="0 * * * *", catchup="skip")
    slot = at("2026-01-01T10:00:00Z")
    now = at("2026-01-01T13:30:00Z")
    decision = decide(task, slot, slot, now, running=False, grace=GRACE)
    assert decision == Decision(None, at("2026-01-01T14:00:00Z"), missed=4)


def test_catchup_once_on_a_crontab_fires_for_the_latest_missed_hour() -> None:
    task = spec(crontab="0 * * * *", catchup="once")
    slot = at("2026-01-01T10:00:00Z")
    now = at("2026-01-01T13:30:00Z")
    decision = decide(task, slot, slot, now, running=False, grace=GRACE)
    assert decision == Decision(at("2026-01-01T13:00:00Z"), at("2026-01-01T14:00:00Z"), missed=3)


def test_async_fires_once_however_late_beat_sees_it() -> None:
    task = spec(type="async")
    slot = at("2026-01-01T10:00:00Z")
    decision = decide(task, slot, slot, slot + dt.timedelta(days=3), running=False)
    assert decision == Decision(slot, None)


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("skip", Decision(None, None, missed=1)),
        ("once", Decision(at("2026-01-01T10:00:00Z"), None)),
    ],
)
def test_scheduled_missed_by_more_than_the_grace_follows_catchup(
    catchup: str, expected: Decision
) -> None:
    task = spec(type="scheduled", at="2026-01-01T10:00:00Z", catchup=catchup)
    slot = at("2026-01-01T10:00:00Z")
    assert decide(task, slot, slot, slot + dt.timedelta(hours=1), running=False) == expected


def test_scheduled_on_time_fires_and_has_no_next_slot() -> None:
    task = spec(type="scheduled", at="2026-01-01T10:00:00Z")
    slot = at("2026-01-01T10:00:00Z")
    assert decide(task, slot, slot, slot, running=False) == Decision(slot, None)


def test_overlap_skip_drops_the_slot_while_an_execution_is_unfinished() -> None:
    task = spec(interval={"seconds": 10}, overlap="skip")
    slot = at("2026-01-01T10:00:00Z")
    decision = decide(task, slot, slot, slot, running=True)
    assert decision == Decision(None, at("2026-01-01T10:00:10Z"), skipped=1, reason="still running")


def test_overlap_allow_fires_even_while_an_execution_is_unfinished() -> None:
    task = spec(interval={"seconds": 10}, overlap="allow")
    slot = at("2026-01-01T10:00:00Z")
    assert decide(task, slot, slot, slot, running=True).fire == slot


def test_overlap_skip_with_catchup_once_counts_both() -> None:
    task = spec(crontab="0 * * * *", catchup="once", overlap="skip")
    slot = at("2026-01-01T10:00:00Z")
    decision = decide(task, slot, slot, at("2026-01-01T13:30:00Z"), running=True)
    assert decision == Decision(
        None, at("2026-01-01T14:00:00Z"), missed=3, skipped=1, reason="still running"
    )


def test_interval_catch_up_stays_on_the_anchor_grid() -> None:
    task = spec(interval={"minutes": 7})
    anchor = at("2026-01-01T10:00:00Z")
    slot = at("2026-01-01T10:07:00Z")
    decision = decide(task, slot, anchor, at("2026-01-01T12:00:00Z"), running=False)
    # Slots are 10:00 + 7k minutes: 11:59 is the first not older than the grace.
    assert decision.next_run_at == at("2026-01-01T11:59:00Z")
    assert decision.missed == 16


def test_counting_a_year_of_minute_slots_stops_walking_early() -> None:
    task = spec(crontab="* * * * *")
    slot = at("2025-01-01T00:00:00Z")
    cutoff = at("2026-01-01T00:00:00Z")
    passed = missed_slots(task, slot, slot, cutoff)
    assert passed.last == passed.kept == at("2025-12-31T23:59:00Z")
    assert passed.count >= 20_000 and passed.dropped == 0


@pytest.mark.parametrize(
    ("crontab", "zone", "slot", "now", "expected_next"),
    [
        # Spring forward in Berlin: 02:30 does not exist on 2026-03-29 and fires at 03:00.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T01:30:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
        ),
        # Fall back: 02:30 happens twice on 2026-10-25 and fires at its first occurrence.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T00:30:00Z",
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
        ),
        # An elapsed-time crontab fires in both passes of the repeated hour.
        (
            "30 * * * *",
            "Europe/Berlin",
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
        ),
        # New York spring forward: 02:15 on 2026-03-08 fires at 03:00 EDT (07:00Z).
        (
            "15 2 * * *",
            "America/New_York",
            "2026-03-07T07:15:00Z",
            "2026-03-07T07:15:00Z",
            "2026-03-08T07:00:00Z",
        ),
    ],
)
def test_dst_rows_fire_on_the_schedule_modules_rules(
    crontab: str, zone: str, slot: str, now: str, expected_next: str
) -> None:
    task = spec(crontab=crontab, timezone=zone)
    decision = decide(task, at(slot), at(slot), at(now), running=False)
    assert decision == Decision(at(slot), at(expected_next))


HOLIDAYS = {"holidays": [{"from": "2026-12-25", "until": "2026-12-26"}]}


@pytest.mark.parametrize(
    ("catchup", "fire", "missed"),
    [("skip", None, 2), ("once", "2026-12-27T09:30:00Z", 1)],
)
def test_catch_up_across_a_holiday_counts_its_slots_as_dropped_not_missed(
    catchup: str, fire: str | None, missed: int
) -> None:
    task = spec(crontab="30 9 * * *", catchup=catchup, skip_on=["holidays"], calendars=HOLIDAYS)
    slot = at("2026-12-24T09:30:00Z")
    decision = decide(task, slot, slot, at("2026-12-28T09:00:00Z"), running=False)
    # Dec 24 and 27 were missed (once runs for the 27th), the 25th and 26th dropped
    assert decision == Decision(
        None if fire is None else at(fire),
        at("2026-12-28T09:30:00Z"),
        missed=missed,
        reason="2 slots dropped by calendars, the last: 2026-12-26 is on calendar holidays "
        "(skip_on)",
        calendar_skipped=2,
    )


def test_catch_up_over_holidays_alone_misses_nothing_and_once_fires_nothing() -> None:
    task = spec(crontab="30 9 * * *", catchup="once", skip_on=["holidays"], calendars=HOLIDAYS)
    slot = at("2026-12-25T09:30:00Z")
    decision = decide(task, slot, slot, at("2026-12-27T09:00:00Z"), running=True)
    assert (decision.fire, decision.missed, decision.calendar_skipped) == (None, 0, 2)
    assert decision.skipped == 0 and decision.next_run_at == at("2026-12-27T09:30:00Z")


def test_catch_up_once_with_a_holiday_and_a_running_execution_gives_both_reasons() -> None:
    task = spec(
        crontab="30 9 * * *",
        catchup="once",
        overlap="skip",
        only_on=["workdays"],
        calendars={"workdays": ["2026-12-24"]},
    )
    slot = at("2026-12-24T09:30:00Z")
    decision = decide(task, slot, slot, at("2026-12-26T09:00:00Z"), running=True)
    assert (decision.fire, decision.missed, decision.skipped, decision.calendar_skipped) == (
        None,
        0,
        1,
        1,
    )
    assert decision.reason == "2026-12-25 is not on calendar workdays (only_on); still running"


def test_interval_catch_up_with_a_calendar_counts_each_date_of_the_task_zone() -> None:
    # every second for two and a half days in Berlin; the 25th (local) is a holiday
    task = spec(
        interval={"seconds": 1},
        timezone="Europe/Berlin",
        skip_on=["holidays"],
        calendars={"holidays": ["2026-12-25"]},
    )
    slot = at("2026-12-24T00:00:00+01:00")
    decision = decide(task, slot, slot, at("2026-12-26T12:01:00+01:00"), running=False)
    assert (decision.missed, decision.calendar_skipped) == (86_400 + 43_200, 86_400)
    assert decision.next_run_at == at("2026-12-26T12:00:00+01:00")


def test_interval_catch_up_agrees_with_the_fire_times_across_a_dst_change() -> None:
    task = spec(
        interval={"minutes": 7},
        timezone="Europe/Berlin",
        only_on=["weekend"],
        calendars={"weekend": ["2026-03-29", "2026-10-25"]},
        active={"until": "2026-10-25T12:00"},
    )
    anchor = at("2026-03-27T00:03:00Z")
    slot = anchor + dt.timedelta(minutes=7)
    for now in (at("2026-03-31T00:00:00Z"), at("2026-10-27T00:00:00Z")):
        cutoff = now - GRACE
        dropped: list[tuple[dt.datetime, str]] = []
        start = slot - dt.timedelta(microseconds=1)
        kept = next_fire_times(task, start, 10**6, anchor, dropped, until=cutoff)
        passed = missed_slots(task, slot, anchor, cutoff)
        assert (passed.missed, passed.kept) == (len(kept), kept[-1])
        assert passed.dropped == len(dropped) > 500
        assert passed.last == max(kept[-1], dropped[-1][0])


def test_a_year_of_second_slots_with_a_calendar_is_counted_by_the_day() -> None:
    task = spec(
        interval={"seconds": 1}, skip_on=["holidays"], calendars={"holidays": ["2026-12-25"]}
    )
    slot = at("2026-01-01T00:00:00Z")
    started = time.perf_counter()
    passed = missed_slots(task, slot, slot, at("2027-01-01T00:00:00Z"))
    assert time.perf_counter() - started < 2.0  # 31.5 million slots walked would take minutes
    assert (passed.count, passed.dropped) == (365 * 86_400, 86_400)
    assert passed.last == passed.kept == at("2026-12-31T23:59:59Z")


@pytest.mark.parametrize("schedule", [{"crontab": "*/10 * * * *"}, {"interval": {"minutes": 10}}])
def test_catch_up_counts_no_slot_after_the_window(schedule: dict[str, Any]) -> None:
    task = spec(
        **schedule,
        active={"until": "2026-06-01T01:00"},
        skip_on=["holidays"],
        calendars={"holidays": ["2026-06-02"]},
    )
    slot = at("2026-06-01T00:10:00Z")
    decision = decide(task, slot, slot, at("2026-06-03T00:00:00Z"), running=False)
    assert (decision.missed, decision.calendar_skipped) == (6, 0)  # 00:10 .. 01:00
    assert decision.fire is None and decision.next_run_at is None
