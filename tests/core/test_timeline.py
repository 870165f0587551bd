"""Slots counted per bucket for the timeline (reconciler.core.timeline): grouping tasks by
schedule gives the counts each task's own ``next_fire_times`` gives."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.schedule import next_fire_times
from reconciler.core.timeline import (
    Scheduled,
    SlotCounts,
    bucket_start,
    count_slots,
    schedules_of,
    slots_of,
)
from reconciler.core.timing import spread_offset
from tests import factories

NOW = dt.datetime(2026, 12, 24, 10, 7, 30, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
FIVE = dt.timedelta(minutes=5)
DAY = dt.timedelta(hours=24)


def counted(
    tasks: list[Scheduled], after: dt.datetime, until: dt.datetime, size: dt.timedelta
) -> SlotCounts:
    return count_slots(schedules_of(tasks).groups, after, until, size)


def stored(name: str, anchor: dt.datetime | None = None, **fields: object) -> Scheduled:
    return Scheduled(name, factories.spec(name, **fields).canonical(), anchor)


def fleet() -> list[Scheduled]:
    old = NOW - dt.timedelta(days=3)
    tasks = [stored(f"hourly-{i}", old, crontab="0 * * * *") for i in range(5)]
    tasks += [stored(f"spread-{i}", old, crontab="0 * * * *", spread="10m") for i in range(4)]
    tasks += [stored("minutely", old, crontab="* * * * *")]
    tasks += [stored("paris", old, crontab="30 9 * * *", timezone="Europe/Paris")]
    # intervals count from their anchor: same period, other anchors, other slots
    tasks += [
        stored("every-7m-a", old, interval="7m"),
        stored("every-7m-b", old + FIVE, interval="7m"),
    ]
    tasks += [stored("every-7m-c", old, interval="7m")]
    # applied an hour from now: nothing before that
    tasks += [stored("new-hourly", NOW + dt.timedelta(hours=1), crontab="0 * * * *")]
    tasks += [
        stored(
            "holiday-skipper",
            old,
            crontab="0 */2 * * *",
            skip_on=["holidays"],
            calendars={"holidays": ["2026-12-25"]},
        ),
        stored("windowed", old, crontab="*/10 * * * *", active={"until": "2026-12-24T15:00"}),
        stored("once", old, type="scheduled", at="2026-12-24T20:00:00+00:00"),
    ]
    return tasks


def brute_force(
    tasks: list[Scheduled], after: dt.datetime, until: dt.datetime
) -> Counter[dt.datetime]:
    counts: Counter[dt.datetime] = Counter()
    for task in tasks:
        spec = factories.spec(task.name, **{k: v for k, v in task.spec.items() if k != "name"})
        begin = after if task.anchor is None or task.anchor <= after else task.anchor
        begin -= dt.timedelta(microseconds=1) if begin != after else dt.timedelta(0)
        for slot in next_fire_times(spec, begin, 1500, task.anchor):
            if slot < until:
                counts[bucket_start(slot, FIVE)] += 1
    return counts


def test_grouped_counts_equal_each_tasks_own_slots() -> None:
    tasks = fleet()
    for after, until in ((NOW, NOW + DAY), (NOW - DAY, NOW)):
        counts = counted(tasks, after, until, FIVE)
        expected = brute_force(tasks, after, until)
        assert {bucket.start: bucket.slots for bucket in counts.buckets} == dict(expected)
        assert counts.slots == sum(expected.values())
        # the five hourly tasks share one computation; spread ones each have their own offset
        assert counts.groups < len(tasks) - 3


def test_a_bucket_names_the_tasks_with_the_most_slots() -> None:
    hour = dt.timedelta(hours=1)
    eleven = NOW.replace(hour=11, minute=0, second=0)
    counts = counted(fleet(), NOW, NOW + DAY, hour)
    bucket = next(b for b in counts.buckets if b.start == eleven)
    per_task = {
        task.name: brute_force([task], eleven - dt.timedelta(microseconds=1), eleven + hour)
        for task in fleet()
    }
    slots = {name: sum(found.values()) for name, found in per_task.items() if found}
    # minutely 60, the 7-minute intervals 8 or 9 each, windowed 6, hourly and spread 1 each
    assert bucket.top[0] == ("minutely", 60)
    assert list(bucket.top) == sorted(slots.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert bucket.tasks == len(slots) == 14
    assert bucket.slots == sum(slots.values())


def test_an_unreadable_stored_spec_is_left_out_and_named() -> None:
    broken = Scheduled("broken", {**factories.spec("broken").canonical(), "crontab": "nope"}, None)
    schedules = schedules_of([*fleet()[:2], broken])
    assert schedules.unreadable == ["broken"]
    assert len(schedules.groups) == 1  # hourly-0 and hourly-1 share one
    counts = count_slots(schedules.groups, NOW, NOW + DAY, FIVE)
    assert counts.slots == 2 * 24


def test_buckets_are_aligned_to_the_epoch() -> None:
    assert bucket_start(NOW, FIVE) == NOW.replace(minute=5, second=0)
    assert bucket_start(NOW, dt.timedelta(hours=1)) == NOW.replace(minute=0, second=0)


def test_slots_stop_at_until_even_where_a_calendar_drops_them_all() -> None:
    # every minute, only on a date months away: the walk ends at the window's end
    far = stored(
        "far", NOW, crontab="* * * * *", only_on=["far"], calendars={"far": ["2027-06-01"]}
    )
    counts = counted([far], NOW, NOW + DAY, FIVE)
    assert counts.slots == 0 and counts.buckets == []
    spec = factories.spec("far", **{k: v for k, v in far.spec.items() if k != "name"})
    assert next_fire_times(spec, NOW, 3, until=NOW + DAY) == []
    june = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    assert next_fire_times(spec, june - dt.timedelta(minutes=2), 3, until=june) == []
    assert next_fire_times(spec, june - dt.timedelta(minutes=1), 3, until=june + 2 * MINUTE) == [
        june,
        june + MINUTE,
    ]


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)
BASES: tuple[dict[str, str], ...] = (
    {"crontab": "30 2 * * *", "timezone": "Europe/Berlin"},  # in the spring-forward gap
    {"crontab": "30 1 * * *", "timezone": "America/New_York"},  # in the repeated hour
    {"crontab": "*/20 1-3 * * *", "timezone": "Europe/Berlin"},
    {"crontab": "0,30 * * * *", "timezone": "Australia/Lord_Howe"},  # a 30-minute change
    {"crontab": "*/5 * * * *", "timezone": "UTC"},  # nearer than most spreads: scaled
    {"interval": "7m", "timezone": "UTC"},
    {"interval": "25h", "timezone": "Europe/Berlin"},
)
CHANGE_DAYS = ("2026-03-29", "2026-10-25", "2026-03-08", "2026-11-01", "2026-04-05", "2026-10-04")
SPREADS = (None, "0s", "90s", "10m", "1h", "5h")


def each_tasks_own(task: Scheduled, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """``next_fire_times`` of the task's own spec, from where it has slots."""
    spec = factories.spec(task.name, **{k: v for k, v in task.spec.items() if k != "name"})
    begin = after if task.anchor is None or task.anchor <= after else task.anchor - TICK
    return next_fire_times(spec, begin, 100_000, task.anchor, until=until)


def grouped(tasks: list[Scheduled], after: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Each task's slots as the grouped computation gives them."""
    found: dict[str, Any] = {}
    for schedule in schedules_of(tasks).groups:
        for names, slots in slots_of(schedule, after, until):
            for name in names:
                found[name] = [EPOCH + slot * TICK for slot in slots]
    return found


def windows(day: str) -> st.SearchStrategy[dict[str, str] | None]:
    return st.sampled_from(
        [
            None,
            {"from": f"{day}T02:15"},
            {"until": f"{day}T03:05"},
            {"from": f"{day}T01:50", "until": f"{day}T09:10"},
            {"until": day},
        ]
    )


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Scheduled], dt.datetime]:
    """Tasks on one schedule but for spread (and anchor), around a daylight-saving change,
    with a window and a calendar or not; and where the count starts."""
    day = draw(st.sampled_from(CHANGE_DAYS))
    midnight = dt.datetime.fromisoformat(f"{day}T00:00+00:00")
    after = midnight + dt.timedelta(seconds=draw(st.integers(-14 * 3600, 8 * 3600)))
    shared: dict[str, Any] = dict(draw(st.sampled_from(BASES)))
    active = draw(windows(day))
    if active is not None:
        shared["active"] = active
    calendar = draw(st.sampled_from([None, "skip_on", "only_on"]))
    if calendar is not None:
        following = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
        shared[calendar] = ["days"]
        shared["calendars"] = {"days": [day if calendar == "skip_on" else following]}
    count = draw(st.integers(1, 6))
    tasks = []
    for i in range(count):
        spread = draw(st.sampled_from(SPREADS))
        hours = draw(st.sampled_from([None, -100, 3, 20]))
        anchor = None if hours is None else after + dt.timedelta(hours=hours, seconds=17)
        extra = {} if spread is None else {"spread": spread}
        tasks.append(stored(f"task-{i}", anchor, **shared, **extra))
    return tasks, after


@settings(max_examples=80, deadline=None)
@given(fleet=fleets())
def test_grouped_spread_slots_are_each_tasks_own(
    fleet: tuple[list[Scheduled], dt.datetime],
) -> None:
    tasks, after = fleet
    until = after + DAY
    found = grouped(tasks, after, until)
    assert found == {task.name: each_tasks_own(task, after, until) for task in tasks}
    crontabs = [task for task in tasks if task.spec.get("crontab")]
    if crontabs:  # one plain computation for all of them, whatever their spread
        assert len(schedules_of(crontabs).groups) == 1


def named(spread: dt.timedelta, low: dt.timedelta, high: dt.timedelta) -> str:
    """A task name whose spread offset is in ``[low, high)``."""
    return next(
        name
        for name in (f"task-{i}" for i in range(10_000))
        if low <= spread_offset(name, spread) < high
    )


def test_the_window_and_calendars_take_the_spread_slot() -> None:
    hour = dt.timedelta(hours=1)
    name = named(hour, dt.timedelta(minutes=40), dt.timedelta(minutes=50))
    offset = spread_offset(name, hour)
    windowed = stored(
        name,
        None,
        crontab="0 * * * *",
        spread="1h",
        active={"from": "2026-12-24T09:30", "until": "2026-12-24T15:10"},
    )
    morning = dt.datetime(2026, 12, 24, 6, tzinfo=dt.UTC)
    slots = grouped([windowed], morning, morning + DAY)[name]
    # 09:00 plus the offset is inside; 15:00 plus it is past the window's end
    nine, fourteen = morning.replace(hour=9), morning.replace(hour=14)
    assert slots[0] == nine + offset and slots[-1] == fourteen + offset and len(slots) == 6
    assert slots == each_tasks_own(windowed, morning, morning + DAY)

    two = 2 * hour
    late = named(two, dt.timedelta(minutes=70), dt.timedelta(minutes=110))
    skipper = stored(
        late,
        None,
        crontab="0 23 * * *",
        spread="2h",
        skip_on=["christmas"],
        calendars={"christmas": ["2026-12-25"]},
    )
    slots = grouped([skipper], NOW, NOW + 2 * DAY)[late]
    # the 24th's slot moves onto the 25th and is dropped; the 25th's moves onto the 26th
    christmas_eve = NOW.replace(hour=23, minute=0, second=0)
    assert slots == [christmas_eve + DAY + spread_offset(late, two)]
    assert slots == each_tasks_own(skipper, NOW, NOW + 2 * DAY)
