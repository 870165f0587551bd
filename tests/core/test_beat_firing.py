"""The pure decision for one due slot (reconciler.core.firing): catch-up, overlap, one-off types."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.core.firing import Decision, decide, latest_missed
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
    latest, count = latest_missed(task, slot, slot, cutoff)
    assert latest == at("2025-12-31T23:59:00Z")
    assert count >= 20_000


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
