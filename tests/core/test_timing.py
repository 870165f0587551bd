"""Spread, windows and calendars in the schedule module (docs/task-files.md, "Spread,
windows and calendars"): the offsets, where slots land, and which dates calendars drop."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from reconciler.core import schedule
from reconciler.core.calendars import CalendarEntry, DateSet, canonical_entries
from reconciler.core.firing import decide
from reconciler.core.schedule import first_slot, next_fire_times, slot_after
from reconciler.core.spec import TaskSpec
from reconciler.core.timing import spread_offset
from tests import factories

MINUTES_10 = dt.timedelta(minutes=10)
MINUTES_1 = dt.timedelta(minutes=1)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def periodic(name: str = "a", **fields: object) -> TaskSpec:
    if "interval" not in fields:
        fields.setdefault("crontab", "0 * * * *")
    return factories.spec(name, type="periodic", **fields)


# --- spread ----------------------------------------------------------------------------


def test_offset_is_pinned_by_the_name() -> None:
    # blake2b of the name: these values are part of the format (moving them moves every
    # task's slots), so they are pinned.
    assert spread_offset("a", MINUTES_10) == dt.timedelta(minutes=2, seconds=23)
    assert spread_offset("nightly", MINUTES_10) == dt.timedelta(minutes=9, seconds=32)
    assert spread_offset("a", dt.timedelta(0)) == dt.timedelta(0)
    assert spread_offset("a", MINUTES_10) != spread_offset("b", MINUTES_10)


def test_offset_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import datetime as dt; from reconciler.core.timing import spread_offset; "
        "print([spread_offset(f't{i}', dt.timedelta(minutes=10)).seconds for i in range(50)])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    here = str([spread_offset(f"t{i}", MINUTES_10).seconds for i in range(50)]) + "\n"
    assert runs == {here}


def test_offsets_of_10000_names_are_close_to_uniform() -> None:
    bins = [0] * 10
    seconds = set()
    for i in range(10_000):
        offset = spread_offset(f"task-{i}", MINUTES_10)
        assert dt.timedelta(0) <= offset < MINUTES_10
        bins[int(offset.total_seconds() // 60)] += 1
        seconds.add(offset.seconds)
    assert len(seconds) == 600  # every second of the spread is used
    assert all(abs(count - 1000) <= 100 for count in bins), bins
    distance = sum(abs(count - 1000) for count in bins) / 2 / 10_000
    assert distance < 0.03, bins  # total variation from uniform: within a few percent


def test_spread_moves_every_slot_by_the_offset() -> None:
    task = periodic(spread="10m")
    times = next_fire_times(task, at("2026-06-01T00:00:00+00:00"), 3)
    assert times == [
        at("2026-06-01T00:02:23+00:00"),
        at("2026-06-01T01:02:23+00:00"),
        at("2026-06-01T02:02:23+00:00"),
    ]
    assert first_slot(task, at("2026-06-01T00:00:00+00:00")) == times[0]
    # a slot is found again from any instant before it, and the next one from itself
    assert slot_after(task, at("2026-06-01T00:02:22+00:00"), times[0]) == times[0]
    assert slot_after(task, times[0], times[0]) == times[1]


@pytest.mark.parametrize("name", [f"task-{i}" for i in range(0, 400, 20)])
@pytest.mark.parametrize(
    ("schedule", "spread"),
    [
        ({"crontab": "*/5 * * * *"}, "10m"),  # the spread is wider than the gap
        ({"crontab": "0,1,30 * * * *"}, "20m"),  # uneven gaps
        ({"interval": "5m"}, "1h"),
        ({"crontab": "0 9 * * 1-5"}, "1d"),
    ],
)
def test_spread_never_moves_a_slot_past_the_next(
    name: str, schedule: dict[str, str], spread: str
) -> None:
    start = at("2026-03-27T00:00:00+00:00")
    plain = next_fire_times(periodic(name, **schedule), start - dt.timedelta(days=1), 3000, start)
    moved = next_fire_times(periodic(name, spread=spread, **schedule), start, 40, anchor=start)
    # each spread slot lies between its own plain slot and the next, one per plain slot
    bases = [bisect.bisect_right(plain, moment) - 1 for moment in moved]
    assert bases == list(range(bases[0], bases[0] + len(moved)))
    for moment, base in zip(moved, bases, strict=True):
        assert plain[base] <= moment < plain[base + 1]
        assert moment.microsecond == 0  # whole seconds, scaled or not


def test_a_narrow_gap_scales_the_offset_down() -> None:
    # 5 min apart with a 10 min spread: the offset (2m23s of 10m) becomes 1m11s of 5m,
    # rounded down to whole seconds
    task = periodic(crontab="*/5 * * * *", spread="10m")
    assert next_fire_times(task, at("2026-06-01T00:00:00+00:00"), 2) == [
        at("2026-06-01T00:01:11+00:00"),
        at("2026-06-01T00:06:11+00:00"),
    ]


@pytest.mark.parametrize(
    ("crontab", "zone", "start", "expected"),
    [
        # spring forward in Berlin: 02:30 does not exist, the slot is 03:00+02, then spread
        ("30 2 * * *", "Europe/Berlin", "2026-03-29T00:00+01:00", "2026-03-29T03:02:23+02:00"),
        # fall back: the first 02:30 fires, spread from it; the repeated one does not
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:00+02:00", "2026-10-25T02:32:23+02:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T02:33+02:00", "2026-10-26T02:32:23+01:00"),
        # elapsed-time crontab through the repeated hour: both passes, each spread
        ("0 * * * *", "Europe/Berlin", "2026-10-25T02:03+02:00", "2026-10-25T02:02:23+01:00"),
        # Lord Howe skips 02:00-02:30: the hourly 02:00 waits for 03:00+11
        ("0 * * * *", "Australia/Lord_Howe", "2026-10-04T01:03+10:30", "2026-10-04T03:02:23+11:00"),
    ],
)
def test_dst_rules_apply_to_the_unspread_slot_first(
    crontab: str, zone: str, start: str, expected: str
) -> None:
    task = periodic(crontab=crontab, timezone=zone, spread="10m")
    (moment,) = next_fire_times(task, at(start), 1)
    assert moment == at(expected)
    assert moment.astimezone(task.tz).isoformat() == expected


def test_tasks_on_one_crontab_share_its_slots_but_not_across_zones() -> None:
    # The plain slots a crontab steps through are remembered for every task on it, keyed
    # by expression and zone: asked in turn, each task gets what it gets alone.
    tasks = [
        periodic(f"t{i}", crontab="30 2 * * *", timezone=zone, spread="10m")
        for i, zone in enumerate(("Europe/Berlin", "America/New_York", "Europe/Berlin"))
    ]
    start = at("2026-10-20T00:00:00+00:00")
    alone = []
    for task in tasks:
        schedule._PLAIN_NEXT.clear()
        alone.append(next_fire_times(task, start, 15))
    schedule._PLAIN_NEXT.clear()
    current = [start] * len(tasks)
    interleaved: list[list[dt.datetime]] = [[] for _ in tasks]
    for _ in range(15):
        for index, task in enumerate(tasks):
            moment = slot_after(task, current[index], start)
            assert moment is not None
            interleaved[index].append(moment)
            current[index] = moment
    assert interleaved == alone
    assert alone[0] != alone[1] and alone[0] != alone[2]  # other zone, other offset
    # Bounded: once full it starts again, and the slots stay the same.
    for minute in range(schedule._PLAIN_NEXT_SIZE + 10):
        slot_after(periodic(crontab="* * * * *", spread="1m"), start + minute * MINUTES_1, start)
    assert len(schedule._PLAIN_NEXT) <= schedule._PLAIN_NEXT_SIZE
    assert next_fire_times(tasks[1], start, 15) == alone[1]


def test_a_slot_fired_is_remembered_for_every_task_that_shares_the_schedule() -> None:
    # Beat shares one schedule among the tasks of one offset: the first asked from a slot
    # searches back for its plain slot, and the others that fired there start from it.
    start = at("2026-06-01T00:00:00+00:00")
    expected = next_fire_times(periodic("t1", crontab="* * * * *", spread="10m"), start, 3)
    shared = periodic("t1", crontab="* * * * *", spread="10m")
    assert shared.timing.bases == {}
    assert slot_after(shared, expected[0], start) == expected[1]
    # both the slot given out and the slot it was asked from, each with its plain slot
    assert shared.timing.bases == {
        moment: moment.replace(second=0) for moment in (expected[0], expected[1])
    }
    assert slot_after(shared, expected[0], start) == expected[1]
    assert slot_after(shared, expected[1], start) == expected[2]
    # an instant that is not a slot is never taken for one
    before = expected[0] - dt.timedelta(seconds=1)
    assert slot_after(shared, before, start) == expected[0]
    assert before not in shared.timing.bases


# --- windows ---------------------------------------------------------------------------


def test_no_slot_before_from_or_after_until_across_a_year_end() -> None:
    task = periodic(
        crontab="0 12 * * *",
        timezone="Europe/Berlin",
        active={"from": dt.date(2027, 1, 1), "until": "2027-01-03"},
    )
    times = next_fire_times(task, at("2026-12-30T00:00+01:00"), 10)
    assert [t.astimezone(task.tz).isoformat() for t in times] == [
        "2027-01-01T12:00:00+01:00",
        "2027-01-02T12:00:00+01:00",
        "2027-01-03T12:00:00+01:00",  # a date as until includes that whole day
    ]
    assert first_slot(task, at("2026-12-30T00:00+01:00")) == times[0]
    assert slot_after(task, times[-1], times[-1]) is None


def test_until_a_time_is_the_last_instant_and_spread_counts() -> None:
    task = periodic(
        crontab="0 * * * *",
        timezone="Europe/Berlin",
        spread="10m",
        active={"until": "2027-03-31T18:00"},
    )
    times = next_fire_times(task, at("2027-03-31T15:00+02:00"), 10)
    # 18:00 + 2m23s is past until; 17:02:23 is the last slot
    assert [t.astimezone(task.tz).isoformat() for t in times] == [
        "2027-03-31T15:02:23+02:00",
        "2027-03-31T16:02:23+02:00",
        "2027-03-31T17:02:23+02:00",
    ]


def test_window_ends_across_a_dst_change() -> None:
    # until the repeated hour's first 02:30 (fold 0) in Berlin
    task = periodic(
        crontab="*/30 * * * *", timezone="Europe/Berlin", active={"until": "2026-10-25T02:30"}
    )
    times = next_fire_times(task, at("2026-10-25T01:45+02:00"), 10)
    assert [t.astimezone(task.tz).isoformat() for t in times] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
    ]


def test_interval_window_counts_missed_slots_only_inside_it() -> None:
    task = periodic(crontab=None, interval="10m", active={"until": "2026-06-01T01:00"})
    anchor = at("2026-06-01T00:00+00:00")
    decision = decide(
        task, at("2026-06-01T00:10+00:00"), anchor, at("2026-06-02T00:00+00:00"), running=False
    )
    assert decision.fire is None
    assert decision.missed == 6  # 00:10 .. 01:00
    assert decision.next_run_at is None


# --- calendars -------------------------------------------------------------------------


def test_date_set_matches_dates_ranges_and_yearly_days() -> None:
    days = DateSet.of(
        canonical_entries(
            [
                "2026-06-01",
                {"from": "2026-12-24", "until": "2027-01-02"},
                {"every_year": "02-29"},
                {"from": "2000-01-01", "until": "2001-12-31"},  # long: kept as a range
            ]
        )
    )
    assert dt.date(2026, 6, 1) in days
    assert dt.date(2026, 12, 31) in days and dt.date(2027, 1, 1) in days
    assert dt.date(2027, 1, 3) not in days
    assert dt.date(2028, 2, 29) in days and dt.date(2028, 3, 1) not in days
    assert dt.date(2001, 7, 1) in days and dt.date(2002, 1, 1) not in days


def test_date_set_is_one_object_per_calendar_and_agrees_with_its_entries_day_by_day() -> None:
    entries: list[CalendarEntry] = [
        "2027-03-01",
        {"from": "2027-12-30", "until": "2028-01-02"},
        {"from": "1990-01-01", "until": "2090-12-31"},  # a century: no bigger than a day
        {"every_year": "02-29"},
        {"every_year": "12-31"},
    ]
    days = DateSet.of(canonical_entries(entries))
    # read back from JSON (as beat reads a stored spec): equal entries, the same set
    assert DateSet.of(json.loads(json.dumps(canonical_entries(entries)))) is days
    assert DateSet.of(["2027-03-01"]) is not days
    other = DateSet.of(["2027-03-01", {"every_year": "02-29"}, {"every_year": "12-31"}])
    day = dt.date(2026, 12, 1)
    while day < dt.date(2029, 3, 2):
        on_range = dt.date(2027, 12, 30) <= day <= dt.date(2028, 1, 2)
        expected = (day.month, day.day) in {(2, 29), (12, 31)} or day == dt.date(2027, 3, 1)
        assert (day in other) == expected, day
        assert (day in days) is True  # inside the century
        assert (day in DateSet.of([*entries[:2], *entries[3:]])) == (expected or on_range), day
        day += dt.timedelta(days=1)
    assert dt.date(2091, 1, 1) not in days and dt.date(2092, 2, 29) in days
    assert dt.date.max in DateSet.of([{"every_year": "12-31"}])
    assert dt.date.min not in days and "2027-03-01" not in days


def test_entries_are_sorted_without_repeats() -> None:
    assert canonical_entries(
        [{"every_year": "12-25"}, "2026-12-25", "2026-01-01", "2026-12-25"]
    ) == ["2026-01-01", "2026-12-25", {"every_year": "12-25"}]


def test_skip_on_drops_slots_on_its_dates_in_the_task_zone() -> None:
    task = periodic(
        crontab="0 9 * * *",
        timezone="America/New_York",
        skip_on=["holidays"],
        calendars={"holidays": [{"every_year": "12-25"}, {"every_year": "01-01"}]},
    )
    dropped: list[tuple[dt.datetime, str]] = []
    times = next_fire_times(task, at("2026-12-24T00:00-05:00"), 3, dropped=dropped)
    assert [t.astimezone(task.tz).date().isoformat() for t in times] == [
        "2026-12-24",
        "2026-12-26",
        "2026-12-27",
    ]
    assert [reason for _, reason in dropped] == ["2026-12-25 is on calendar holidays (skip_on)"]
    # beat: the due slot on the holiday is skipped with its reason, the next one planned
    slot = at("2026-12-25T09:00-05:00")
    decision = decide(task, slot, slot, slot, running=False)
    assert (decision.fire, decision.calendar_skipped, decision.skipped) == (None, 1, 0)
    assert decision.reason == "2026-12-25 is on calendar holidays (skip_on)"
    assert decision.next_run_at == at("2026-12-26T09:00-05:00")


def test_only_on_keeps_slots_on_its_dates_across_a_year_end() -> None:
    task = periodic(
        crontab="0 0 * * *",
        timezone="Europe/Berlin",
        only_on=["month-end"],
        calendars={"month-end": ["2026-12-31", "2027-01-31"]},
    )
    times = next_fire_times(task, at("2026-12-01T00:00+01:00"), 3)
    assert [t.astimezone(task.tz).isoformat() for t in times] == [
        "2026-12-31T00:00:00+01:00",
        "2027-01-31T00:00:00+01:00",
    ]
    slot = at("2027-01-01T00:00+01:00")
    decision = decide(task, slot, slot, slot, running=False)
    assert decision.reason == "2027-01-01 is not on calendar month-end (only_on)"


def test_a_stored_spec_must_carry_the_calendars_it_names() -> None:
    with pytest.raises(ValueError, match="does not match skip_on and only_on"):
        periodic(skip_on=["holidays"], calendars={})


def test_timing_fields_are_for_periodic_tasks() -> None:
    with pytest.raises(ValueError, match="is for periodic tasks"):
        factories.spec("a", type="async", spread="10m")
