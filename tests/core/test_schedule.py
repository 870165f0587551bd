"""The schedule module: crontab DST rules as table rows, intervals, one-off types, words."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.describe import describe
from reconciler.core.schedule import first_slot, next_fire_times, slot_after
from reconciler.core.spec import TaskSpec

UTC = dt.UTC
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]


def task(**fields: Any) -> TaskSpec:
    base: dict[str, Any] = {"name": "t", "owner": "ops", "task": "app.worker.test_celery"}
    base.setdefault("type", "periodic")
    return TaskSpec(**{**base, **fields})


def cron(expression: str, zone: str = "UTC") -> TaskSpec:
    return task(crontab=expression, timezone=zone)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local_times(spec: TaskSpec, start: dt.datetime, count: int) -> str:
    """The fire times in the task's zone, e.g. ``2026-03-29T03:00+02:00 ...``."""
    times = next_fire_times(spec, start, count)
    assert all(t.tzinfo is UTC for t in times)
    return " ".join(t.astimezone(spec.tz).isoformat(timespec="minutes") for t in times)


# --- DST: Europe/Berlin (2026-03-29 01:00Z spring, 2026-10-25 01:00Z fall) ---------------
# --- America/New_York (2026-03-08 07:00Z spring, 2026-11-01 06:00Z fall) ----------------
# --- Australia/Lord_Howe (2026-04-04 15:00Z fall 02:00 -> 01:30, 2026-10-03 15:30Z spring
#     02:00 -> 02:30) ----------------------------------------------------------------------

# fmt: off
DST_ROWS = [
    # zone, crontab, start (UTC), the fire times in the zone
    ("Europe/Berlin", "30 2 * * *", "2026-03-28T12:00",
     "2026-03-29T03:00+02:00 2026-03-30T02:30+02:00"),
    ("Europe/Berlin", "30 2 * * *", "2026-10-24T12:00",
     "2026-10-25T02:30+02:00 2026-10-26T02:30+01:00"),
    # several wall times in one gap fire once, at the end of the gap
    ("Europe/Berlin", "0,30 2,3 * * *", "2026-03-28T12:00",
     "2026-03-29T03:00+02:00 2026-03-29T03:30+02:00 2026-03-30T02:00+02:00"),
    # a fixed hour with a minute step: the repeated hour fires once
    ("Europe/Berlin", "*/15 2 * * *", "2026-10-24T12:00",
     "2026-10-25T02:00+02:00 2026-10-25T02:15+02:00 2026-10-25T02:30+02:00 "
     "2026-10-25T02:45+02:00 2026-10-26T02:00+01:00"),
    ("Europe/Berlin", "*/30 * * * *", "2026-03-29T00:00",
     "2026-03-29T01:30+01:00 2026-03-29T03:00+02:00 2026-03-29T03:30+02:00"),
    ("Europe/Berlin", "*/30 * * * *", "2026-10-24T23:45",
     "2026-10-25T02:00+02:00 2026-10-25T02:30+02:00 2026-10-25T02:00+01:00 "
     "2026-10-25T02:30+01:00 2026-10-25T03:00+01:00"),
    # an hour step follows elapsed time: both passes fire, the gap does not exist
    ("Europe/Berlin", "0 */2 * * *", "2026-10-24T21:30",
     "2026-10-25T00:00+02:00 2026-10-25T02:00+02:00 2026-10-25T02:00+01:00 "
     "2026-10-25T04:00+01:00"),
    ("Europe/Berlin", "0 */2 * * *", "2026-03-28T22:30",
     "2026-03-29T00:00+01:00 2026-03-29T04:00+02:00"),
    ("America/New_York", "30 2 * * *", "2026-03-07T12:00",
     "2026-03-08T03:00-04:00 2026-03-09T02:30-04:00"),
    ("America/New_York", "30 1 * * *", "2026-10-31T12:00",
     "2026-11-01T01:30-04:00 2026-11-02T01:30-05:00"),
    ("America/New_York", "30 2 * * *", "2026-10-31T12:00",
     "2026-11-01T02:30-05:00 2026-11-02T02:30-05:00"),
    ("America/New_York", "*/30 * * * *", "2026-03-08T06:15",
     "2026-03-08T01:30-05:00 2026-03-08T03:00-04:00 2026-03-08T03:30-04:00"),
    ("America/New_York", "*/30 * * * *", "2026-11-01T04:45",
     "2026-11-01T01:00-04:00 2026-11-01T01:30-04:00 2026-11-01T01:00-05:00 "
     "2026-11-01T01:30-05:00 2026-11-01T02:00-05:00"),
    ("Australia/Lord_Howe", "30 2 * * *", "2026-10-03T00:00",
     "2026-10-04T02:30+11:00 2026-10-05T02:30+11:00"),
    ("Australia/Lord_Howe", "0 2 * * *", "2026-10-03T00:00",
     "2026-10-04T02:30+11:00 2026-10-05T02:00+11:00"),
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T00:00",
     "2026-04-05T01:45+11:00 2026-04-06T01:45+10:30"),
    ("Australia/Lord_Howe", "*/30 * * * *", "2026-04-04T13:45",
     "2026-04-05T01:00+11:00 2026-04-05T01:30+11:00 2026-04-05T01:30+10:30 "
     "2026-04-05T02:00+10:30"),
    ("Australia/Lord_Howe", "*/30 * * * *", "2026-10-03T14:45",
     "2026-10-04T01:30+10:30 2026-10-04T02:30+11:00 2026-10-04T03:00+11:00"),
    # on the hour: 02:00 does not exist on the spring day, so 1.5 hours pass
    ("Australia/Lord_Howe", "0 * * * *", "2026-10-03T14:15",
     "2026-10-04T01:00+10:30 2026-10-04T03:00+11:00"),
]
# fmt: on


@pytest.mark.parametrize(("zone", "expression", "start", "expected"), DST_ROWS)
def test_crontab_across_dst(zone: str, expression: str, start: str, expected: str) -> None:
    assert local_times(cron(expression, zone), utc(start), expected.count(" ") + 1) == expected


def test_spring_forward_fires_at_the_first_instant_after_the_gap() -> None:
    spec = cron("30 2 * * *", "Europe/Berlin")
    assert slot_after(spec, utc("2026-03-28T12:00"), utc("2026-01-01T00:00")) == utc(
        "2026-03-29T01:00"
    )


def test_second_pass_of_a_repeated_hour_does_not_fire_a_fixed_hour_again() -> None:
    spec = cron("30 2 * * *", "Europe/Berlin")
    # 02:10+01:00, the second pass: 02:30 already fired in the first pass
    assert slot_after(spec, utc("2026-10-25T01:10"), utc("2026-01-01T00:00")) == utc(
        "2026-10-26T01:30"
    )


# --- calendar rules ------------------------------------------------------------------------

# fmt: off
CALENDAR_ROWS = [
    # crontab (UTC), start, the fire times
    ("0 0 29 2 *", "2026-03-01T00:00", "2028-02-29T00:00+00:00 2032-02-29T00:00+00:00"),
    # no 29 February in 2100: eight years to the next one
    ("0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00+00:00"),
    ("0 12 31 * *", "2026-01-31T13:00",
     "2026-03-31T12:00+00:00 2026-05-31T12:00+00:00 2026-07-31T12:00+00:00 "
     "2026-08-31T12:00+00:00"),
    ("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59+00:00"),
    # both day fields restricted: either matches (the 13th, or a Friday)
    ("0 0 13 * 5", "2026-02-01T00:00",
     "2026-02-06T00:00+00:00 2026-02-13T00:00+00:00 2026-02-20T00:00+00:00 "
     "2026-02-27T00:00+00:00 2026-03-06T00:00+00:00 2026-03-13T00:00+00:00"),
    ("0 0 */2 * 1", "2026-01-31T12:00",
     "2026-02-01T00:00+00:00 2026-02-02T00:00+00:00 2026-02-03T00:00+00:00 "
     "2026-02-05T00:00+00:00"),
    # a field covering its whole range counts as '*': then both must match
    ("0 0 1 * 0-6", "2026-02-01T00:00", "2026-03-01T00:00+00:00 2026-04-01T00:00+00:00"),
    ("0 0 1-31 * 1", "2026-02-01T00:00", "2026-02-02T00:00+00:00 2026-02-09T00:00+00:00"),
    # 0 = Sunday
    ("0 9 * * 0", "2026-02-01T10:00", "2026-02-08T09:00+00:00 2026-02-15T09:00+00:00"),
    ("0 9 * * 1-5", "2026-02-06T10:00", "2026-02-09T09:00+00:00 2026-02-10T09:00+00:00"),
    ("5-10/5 */12 * 1,7 *", "2026-01-31T12:06",
     "2026-01-31T12:10+00:00 2026-07-01T00:05+00:00 2026-07-01T00:10+00:00"),
    # 'a/step' runs from a to the field's maximum; a one-value range may carry a step
    ("40/15 0 1 12-12/15 *", "2026-01-01T00:00",
     "2026-12-01T00:40+00:00 2026-12-01T00:55+00:00 2027-12-01T00:40+00:00"),
    ("0 0 * * 6/5", "2026-02-01T00:00", "2026-02-07T00:00+00:00 2026-02-14T00:00+00:00"),
    # '*' inside a list is the whole range
    ("0 0 *,5 * 3,*", "2026-02-01T00:00", "2026-02-02T00:00+00:00 2026-02-03T00:00+00:00"),
]
# fmt: on


@pytest.mark.parametrize(("expression", "start", "expected"), CALENDAR_ROWS)
def test_crontab_calendar(expression: str, start: str, expected: str) -> None:
    assert local_times(cron(expression), utc(start), expected.count(" ") + 1) == expected


def test_a_crontab_that_never_matches_has_no_slot() -> None:
    spec = cron("0 0 30 2 *")
    assert slot_after(spec, utc("2026-01-01T00:00"), utc("2026-01-01T00:00")) is None
    assert first_slot(spec, utc("2026-01-01T00:00")) is None
    assert next_fire_times(spec, utc("2026-01-01T00:00"), 3) == []


def test_crontab_slot_is_strictly_after_a_fractional_instant() -> None:
    spec = cron("*/5 * * * *")
    anchor = utc("2026-01-01T00:00")
    assert slot_after(spec, utc("2026-05-01T10:04:59.999999"), anchor) == utc("2026-05-01T10:05")
    assert slot_after(spec, utc("2026-05-01T10:05"), anchor) == utc("2026-05-01T10:10")
    assert slot_after(spec, utc("2026-05-01T10:05:00.000001"), anchor) == utc("2026-05-01T10:10")


def test_crontab_first_slot_is_strictly_after_the_anchor() -> None:
    spec = cron("0 * * * *", "Europe/Berlin")
    assert first_slot(spec, utc("2026-05-01T10:00")) == utc("2026-05-01T11:00")


def test_input_in_another_offset_gives_utc_out() -> None:
    spec = cron("30 2 * * *", "Europe/Berlin")
    start = dt.datetime(2026, 3, 28, 22, 0, tzinfo=ZoneInfo("America/New_York"))
    result = slot_after(spec, start, start)
    assert result is not None
    assert result.tzinfo is UTC
    assert result == utc("2026-03-30T00:30")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="instant must be an aware datetime"):
        slot_after(cron("* * * * *"), dt.datetime(2026, 1, 1), utc("2026-01-01T00:00"))


# --- intervals -------------------------------------------------------------------------------


def test_interval_counts_from_the_anchor_without_drift() -> None:
    spec = task(interval={"hours": 1, "minutes": 30})
    anchor = utc("2026-01-01T00:00:00.250000")
    assert first_slot(spec, anchor) == utc("2026-01-01T01:30:00.250000")
    rows = [
        ("2025-12-31T00:00", "2026-01-01T01:30:00.250000"),  # before the anchor
        ("2026-01-01T00:00:00.250000", "2026-01-01T01:30:00.250000"),
        ("2026-01-01T01:30:00.250000", "2026-01-01T03:00:00.250000"),  # strictly after
        ("2026-01-01T02:59:59", "2026-01-01T03:00:00.250000"),
        # a year later, still on the anchor's grid: 5840 periods
        ("2026-12-31T23:59:59", "2027-01-01T00:00:00.250000"),
    ]
    for instant, expected in rows:
        assert slot_after(spec, utc(instant), anchor) == utc(expected), instant


def test_interval_runs_on_elapsed_time_across_dst() -> None:
    spec = task(interval={"days": 1}, timezone="Europe/Berlin")
    anchor = dt.datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    times = next_fire_times(spec, anchor, 2, anchor)
    assert [t.isoformat() for t in times] == [
        "2026-03-29T11:00:00+00:00",
        "2026-03-30T11:00:00+00:00",
    ]


def test_interval_next_fire_times_default_anchor_is_start() -> None:
    spec = task(interval={"seconds": 45})
    start = utc("2026-01-01T00:00")
    assert next_fire_times(spec, start, 3) == [
        utc("2026-01-01T00:00:45"),
        utc("2026-01-01T00:01:30"),
        utc("2026-01-01T00:02:15"),
    ]
    assert next_fire_times(spec, start, 2, anchor=utc("2025-12-31T23:59:50")) == [
        utc("2026-01-01T00:00:35"),
        utc("2026-01-01T00:01:20"),
    ]


# --- one-off types ---------------------------------------------------------------------------


def test_async_fires_once_at_the_anchor() -> None:
    spec = task(type="async")
    anchor = utc("2026-01-01T00:00")
    assert first_slot(spec, anchor) == anchor
    assert slot_after(spec, anchor, anchor) is None
    assert next_fire_times(spec, anchor, 5) == []


def test_scheduled_fires_once_at_at() -> None:
    spec = task(type="scheduled", at="2026-12-02T15:00:00", timezone="Europe/Berlin")
    at = utc("2026-12-02T14:00")
    assert first_slot(spec, utc("2026-01-01T00:00")) == at
    assert slot_after(spec, utc("2026-01-01T00:00"), utc("2026-01-01T00:00")) is None
    assert next_fire_times(spec, utc("2026-01-01T00:00"), 5) == [at]
    assert next_fire_times(spec, at, 5) == []


# --- words -----------------------------------------------------------------------------------

DESCRIBE_ROWS = [
    (cron("30 2 * * *", "Europe/Berlin"), "At 02:30 (Europe/Berlin)"),
    (cron("*/15 * * * *"), "Every 15 minutes (UTC)"),
    (cron("0 9 * * 0"), "At 09:00, only on Sunday (UTC)"),
    (cron("0 9 * * 1-5"), "At 09:00, Monday through Friday (UTC)"),
    (cron("0 0 13 * 5"), "At 00:00, on day 13 of the month, or only on Friday (UTC)"),
    (
        cron("0 0 1,15 * 1-5"),
        "At 00:00, on day 1 and 15 of the month, or Monday through Friday (UTC)",
    ),
    (cron("0 0 1 * 0-6"), "At 00:00, on day 1 of the month (UTC)"),
    (cron("0 0 29 2 *"), "At 00:00, on day 29 of the month, only in February (UTC)"),
    (task(interval={"hours": 1, "minutes": 30}), "every 1h30m"),
    (task(interval={"minutes": 90}), "every 1h30m"),
    (task(interval="2d1s"), "every 2d1s"),
    (task(interval={"minutes": 1}), "every 1m"),
    (
        task(type="scheduled", at="2025-12-02T15:00:00", timezone="Europe/Berlin"),
        "once at 2025-12-02 15:00 Europe/Berlin",
    ),
    (task(type="scheduled", at="2025-12-02T15:00:30Z"), "once at 2025-12-02 15:00:30 UTC"),
    (task(type="async"), "once, as soon as it is applied"),
]


@pytest.mark.parametrize(("spec", "words"), DESCRIBE_ROWS)
def test_describe(spec: TaskSpec, words: str) -> None:
    assert describe(spec) == words


# --- properties ------------------------------------------------------------------------------

TRANSITIONS = [
    utc(text)
    for text in (
        "2026-03-29T01:00",
        "2026-10-25T01:00",  # Berlin
        "2026-03-08T07:00",
        "2026-11-01T06:00",  # New York
        "2026-04-04T15:00",
        "2026-10-03T15:30",  # Lord Howe
        "2028-02-28T23:00",  # a leap day
    )
]
MINUTES = ["*", "*/15", "0", "30", "0,30", "15-45/15", "*/7", "59", "45"]
HOURS = ["*", "*/2", "1-23/2", "2", "1,2,3", "0-3", "1", "3", "*/3", "2-3"]
DAYS = ["*", "*", "1", "*/2", "25-31", "29"]
MONTHS = ["*", "*", "2-4,10-11", "3,10"]
WEEKDAYS = ["*", "*", "0", "1-5", "6", "0,6"]

crontabs = st.builds(
    lambda *parts: " ".join(parts),
    st.sampled_from(MINUTES),
    st.sampled_from(HOURS),
    st.sampled_from(DAYS),
    st.sampled_from(MONTHS),
    st.sampled_from(WEEKDAYS),
)
starts = st.builds(
    lambda base, minutes: base + dt.timedelta(minutes=minutes),
    st.sampled_from(TRANSITIONS),
    st.integers(min_value=-36 * 60, max_value=12 * 60),
)


@settings(max_examples=150, deadline=None)
@given(
    expression=crontabs,
    zone=st.sampled_from(ZONES),
    start=starts,
    seconds=st.integers(min_value=0, max_value=59),
)
def test_slot_after_is_strictly_increasing(
    expression: str, zone: str, start: dt.datetime, seconds: int
) -> None:
    spec = cron(expression, zone)
    current: dt.datetime | None = start + dt.timedelta(seconds=seconds)
    seen = []
    for _ in range(25):
        assert current is not None
        following = slot_after(spec, current, start)
        if following is None:
            break
        assert following > current
        seen.append(following)
        current = following
    assert len(set(seen)) == len(seen)


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(part) for part in base.split("-"))
        else:
            first = int(base)
            last = high if step else first
        values.update(range(first, last + 1, int(step or 1)))
    return values


def _oracle(expression: str, zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The rules of docs/beat.md read literally, minute by minute over real time."""
    minute, hour, day, month, weekday = expression.split()
    minutes, hours = _field(minute, 0, 59), _field(hour, 0, 23)
    days, months, weekdays = _field(day, 1, 31), _field(month, 1, 12), _field(weekday, 0, 6)
    either = days != set(range(1, 32)) and weekdays != set(range(7))

    def matches(wall: dt.datetime) -> bool:
        by_day, by_weekday = wall.day in days, (wall.weekday() + 1) % 7 in weekdays
        day_ok = (by_day or by_weekday) if either else (by_day and by_weekday)
        return day_ok and wall.month in months and wall.hour in hours and wall.minute in minutes

    tz, step = ZoneInfo(zone), dt.timedelta(minutes=1)

    def wall(instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(tz).replace(tzinfo=None)

    fires = []
    if "*" in hour or "/" in hour:  # every instant whose clock reading matches
        instant = start + step
        while instant <= end:
            if matches(wall(instant)):
                fires.append(instant)
            instant += step
        return fires
    # fixed hour: each matching wall time fires when the clock first reaches it
    high = max(wall(start - k * step) for k in range(0, 180))
    instant = start + step
    while instant <= end:
        now = wall(instant)
        if now > high:
            candidate = high + step
            while candidate <= now and not matches(candidate):
                candidate += step
            if candidate <= now:
                fires.append(instant)
            high = now
        instant += step
    return fires


@settings(max_examples=60, deadline=None)
@given(expression=crontabs, zone=st.sampled_from(ZONES), start=starts)
def test_slot_after_agrees_with_the_rules_read_literally(
    expression: str, zone: str, start: dt.datetime
) -> None:
    spec = cron(expression, zone)
    end = start + dt.timedelta(hours=30)
    found = []
    current = slot_after(spec, start, start)
    while current is not None and current <= end:
        found.append(current)
        current = slot_after(spec, current, start)
    assert found == _oracle(expression, zone, start, end)


def test_no_slot_past_the_last_representable_year() -> None:
    anchor = utc("2026-01-01T00:00")
    assert slot_after(cron("0 0 29 2 *"), utc("9996-03-01T00:00"), anchor) is None
    assert slot_after(cron("30 2 * * *", "Europe/Berlin"), utc("9999-12-31T12:00"), anchor) is None
    assert (
        slot_after(cron("*/15 * * * *", "Europe/Berlin"), utc("9999-12-31T23:50"), anchor) is None
    )
