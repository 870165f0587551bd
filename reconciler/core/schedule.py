"""When tasks fire: the only place that turns a task's schedule into instants.

The rules: docs/beat.md, "Schedules" and "Daylight saving time".

Pure: aware datetimes in, aware UTC datetimes out, the current time always a parameter.
Apply calls ``first_slot``; the Beat scheduler calls ``slot_after`` for every fire;
``reconcile next`` calls ``next_fire_times`` and ``describe``.

Crontab, on wall-clock time in the task's zone (W is a wall time the five fields match):

- A *fixed-hour* crontab (hour field of numbers, lists and ranges, no ``*`` and no step)
  fires for W at the first instant at which the zone's clock shows W or later. So a W
  that occurs twice (fall back) fires once, at its first occurrence; a W in a gap
  (spring forward) fires at the first instant after the gap (Berlin ``30 2 * * *`` on
  2026-03-29: 03:00+02:00), and several W in one gap fire there once together.
- An *elapsed-time* crontab (hour field ``*`` or holding a step, e.g. ``*/2``) fires at
  every instant at which the clock shows a matching W: both passes of a repeated hour
  fire, wall times inside a gap do not exist and do not fire, nothing fires twice.
- Day of month and day of week: when both are restricted (neither covers its whole
  range, so ``0-6`` counts as ``*``), a day matches if either matches (cron's OR);
  otherwise it must match both.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)

from reconciler.core.spec import CRON_FIELDS, Crontab, TaskSpec

__all__ = ["describe", "first_slot", "never_fires", "next_fire_times", "slot_after"]

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1)
_MINUTE = dt.timedelta(minutes=1)
_DAY_SECONDS = 86_400
_YEAR_SECONDS = 366 * _DAY_SECONDS
_SECOND = dt.timedelta(seconds=1)
# Any date a crontab can match recurs within 8 years (29 February around 2100).
_SEARCH_YEARS = 9
_LAST_MOMENT = calendar.timegm((dt.MAXYEAR, 12, 30, 0, 0, 0))


# --- the public API -------------------------------------------------------------------


def first_slot(spec: TaskSpec, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot of a task whose schedule starts at ``anchor`` (enabled is not checked)."""
    anchor = _aware(anchor, "anchor")
    if spec.type == "async":
        return anchor
    if spec.type == "scheduled":
        return spec.at.astimezone(UTC) if spec.at is not None else None
    if spec.interval is not None:
        return anchor + spec.interval.timedelta
    return slot_after(spec, anchor, anchor)


def slot_after(spec: TaskSpec, instant: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot strictly after ``instant``; None for one-off types and crontabs that
    never match.

    ``anchor`` is when the schedule started: intervals count from it (anchor + k * interval,
    k >= 1); crontabs ignore it.
    """
    instant = _aware(instant, "instant")
    if spec.type != "periodic":
        return None
    if spec.interval is not None:
        anchor = _aware(anchor, "anchor")
        period = spec.interval.timedelta
        steps = max((instant - anchor) // period + 1, 1)
        return anchor + steps * period
    if spec.crontab is None:
        return None
    return _compiled(spec.crontab).after(_zone(spec.timezone), instant)


def next_fire_times(
    spec: TaskSpec, start: dt.datetime, count: int, anchor: dt.datetime | None = None
) -> list[dt.datetime]:
    """Up to ``count`` fire times strictly after ``start`` (an interval counts from ``anchor``,
    by default ``start``); a past ``scheduled`` task and an ``async`` one give none."""
    start = _aware(start, "start")
    if spec.type == "async" or count <= 0:
        return []
    if spec.type == "scheduled":
        at = first_slot(spec, start)
        return [at] if at is not None and at > start else []
    anchor = start if anchor is None else _aware(anchor, "anchor")
    times: list[dt.datetime] = []
    current = slot_after(spec, start, anchor)
    while current is not None and len(times) < count:
        times.append(current)
        current = slot_after(spec, current, anchor)
    return times


def describe(spec: TaskSpec) -> str:
    """The schedule in words, e.g. ``At 02:30 (Europe/Berlin)``, ``every 1 hour 30 minutes``."""
    if spec.type == "async":
        return "once, as soon as it is applied"
    if spec.type == "scheduled" and spec.at is not None:
        local = spec.at.astimezone(spec.tz)
        pattern = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {local.strftime(pattern)} {spec.timezone}"
    if spec.interval is not None:
        parts = [
            f"{value} {unit}{'' if value == 1 else 's'}"
            for value, unit in (
                (spec.interval.days, "day"),
                (spec.interval.hours, "hour"),
                (spec.interval.minutes, "minute"),
                (spec.interval.seconds, "second"),
            )
            if value
        ]
        return "every " + " ".join(parts)
    if spec.crontab is not None:
        return f"{describe_crontab(spec.crontab)} ({spec.timezone})"
    return "never"


def never_fires(crontab: Crontab) -> bool:
    """True when no date matches the day and month fields (``0 0 30 2 *``): searched
    from 2000 over the years in which every date recurs, leap days included."""
    return _compiled(crontab).next_wall(dt.datetime(2000, 1, 1), inclusive=True) is None


def describe_crontab(crontab: Crontab) -> str:
    """The five fields in words (cron-descriptor, 24-hour clock, 0 = Sunday, our OR rule)."""
    fields = _compiled(crontab)
    # Spell whole-range fields as '*' so the words follow our meaning of 'restricted'.
    texts = [
        "*" if full else text
        for text, full in zip(crontab.expression.split(), fields.full, strict=True)
    ]
    options = Options()
    options.use_24hour_time_format = True
    options.day_of_week_start_index_zero = True
    try:
        descriptor = ExpressionDescriptor(" ".join(texts), options)
        words: str = descriptor.get_description()
        weekdays: str = descriptor.get_day_of_week_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        return f"cron '{crontab.expression}'"
    # cron-descriptor says "or" only for a single weekday; say it for ranges and lists too.
    if fields.day_or and weekdays.startswith(", ") and not weekdays.startswith(", or "):
        words = words.replace(weekdays, ", or " + weekdays[2:], 1)
    return words


# --- crontab matching on wall-clock time -----------------------------------------------


@dataclass
class _Cron:
    """One crontab's expanded field sets, and the search for its next matching wall time."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    days: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    full: tuple[bool, ...]  # per field: does it cover its whole range?
    elapsed: bool  # hour field '*' or a step: follows elapsed time across DST changes
    _month_days: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)

    @property
    def day_or(self) -> bool:
        return not self.full[2] and not self.full[4]

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of one month, computed once per month."""
        key = (year, month)
        cached = self._month_days.get(key)
        if cached is not None:
            return cached
        first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
        matching = []
        for day in range(1, length + 1):
            by_date = day in self.days
            by_weekday = (first_weekday + day) % 7 in self.weekdays  # -> Sunday = 0
            if (by_date or by_weekday) if self.day_or else (by_date and by_weekday):
                matching.append(day)
        result = tuple(matching)
        self._month_days[key] = result
        return result

    def next_wall(self, wall: dt.datetime, inclusive: bool) -> dt.datetime | None:
        """The first matching naive wall time after ``wall`` (or at it, if ``inclusive``)."""
        start = wall.replace(second=0, microsecond=0)
        if start < wall or not inclusive:
            start += _MINUTE
        year, month, day, hour, minute = (
            start.year,
            start.month,
            start.day,
            start.hour,
            start.minute,
        )
        last_year = min(year + _SEARCH_YEARS, dt.MAXYEAR)
        hours, minutes = self.hours, self.minutes
        while year <= last_year:
            if month > 12:
                year, month, day, hour, minute = year + 1, 1, 1, 0, 0
                continue
            if month not in self.months:
                month, day, hour, minute = month + 1, 1, 0, 0
                continue
            days = self.days_in(year, month)
            index = bisect.bisect_left(days, day)
            if index == len(days):
                month, day, hour, minute = month + 1, 1, 0, 0
                continue
            if days[index] != day:
                day, hour, minute = days[index], 0, 0
            index = bisect.bisect_left(hours, hour)
            if index == len(hours):
                day, hour, minute = day + 1, 0, 0
                continue
            if hours[index] != hour:
                hour, minute = hours[index], 0
            index = bisect.bisect_left(minutes, minute)
            if index == len(minutes):
                hour, minute = hour + 1, 0
                continue
            return dt.datetime(year, month, day, hour, minutes[index])
        return None

    def after(self, zone: _Zone, instant: dt.datetime) -> dt.datetime | None:
        """The first fire strictly after ``instant`` under the DST rules of the module docstring."""
        if _timestamp(instant) >= _LAST_MOMENT:  # no local date past year 9999 exists
            return None
        return (
            self._after_elapsed(zone, instant) if self.elapsed else self._after_fixed(zone, instant)
        )

    def _after_fixed(self, zone: _Zone, instant: dt.datetime) -> dt.datetime | None:
        local = instant.astimezone(zone.tz)
        wall, inclusive = local.replace(tzinfo=None), False
        if local.fold:
            # The second pass of a repeated hour: every wall time up to the moment the clock
            # was set back was already shown (and fired) in the first pass.
            change = zone.change_at_or_before(_timestamp(instant))
            if change is not None:
                wall, inclusive = _naive(change.at + change.before), True
        match = self.next_wall(wall, inclusive)
        if match is None:
            return None
        first = match.replace(tzinfo=zone.tz).astimezone(UTC)  # fold=0: the first occurrence
        if first.astimezone(zone.tz).replace(tzinfo=None) == match:
            return first
        # A wall time inside a gap: zoneinfo placed it after the change; fire at the change.
        change = zone.change_at_or_before(_timestamp(first))
        return first if change is None else _aware_utc(change.at)

    def _after_elapsed(self, zone: _Zone, instant: dt.datetime) -> dt.datetime | None:
        # Walk the spans of constant UTC offset; within one, wall time and instant move together.
        moment, inclusive = _timestamp(instant), False
        for _ in range(8 * _SEARCH_YEARS):
            if moment >= _LAST_MOMENT:
                return None
            offset = zone.offset(moment)
            span_end = zone.next_change(moment)
            match = self.next_wall(_naive(moment + offset), inclusive)
            if match is None:
                return None
            fire = _seconds(match) - offset
            if fire < span_end:
                return _aware_utc(fire)
            moment, inclusive = span_end, True
        return None


@lru_cache(maxsize=4096)
def _compiled(crontab: Crontab) -> _Cron:
    expression = crontab.expression
    sets = [
        _expand(text, low, high)
        for text, (_, low, high) in zip(expression.split(), CRON_FIELDS, strict=True)
    ]
    full = [
        values == tuple(range(low, high + 1))
        for values, (_, low, high) in zip(sets, CRON_FIELDS, strict=True)
    ]
    hour_text = crontab.hour
    return _Cron(
        minutes=sets[0],
        hours=sets[1],
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(sets[4]),
        full=tuple(full),
        elapsed="*" in hour_text or "/" in hour_text,
    )


def _expand(text: str, low: int, high: int) -> tuple[int, ...]:
    """The values of one canonical field (``reconciler.core.spec`` checked its syntax): items
    ``*``, ``a``, ``a-b``, each with an optional ``/step``; ``a/step`` runs to the maximum.

    Written here rather than taken from croniter, whose expansion drops single-value
    ranges with a step (``12-12/15``) and misreads ``6/5`` in the day of week."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, last_text = base.split("-")
            first, last = int(first_text), int(last_text)
        else:
            first = int(base)
            last = high if step else first
        values.update(range(first, last + 1, int(step) if step else 1))
    return tuple(sorted(values))


# --- time zones: offsets and the instants they change -----------------------------------


@dataclass(frozen=True)
class _Change:
    at: int  # POSIX seconds of the first instant with the new offset
    before: int  # UTC offsets in seconds
    after: int


class _Zone:
    """A zone's offset changes over a span of years, found once and kept (zoneinfo does not
    list them); the span grows to cover the instants asked about."""

    def __init__(self, name: str) -> None:
        self.tz = ZoneInfo(name)
        self._years = (0, -1)  # first and last year covered; none yet
        # Replaced whole, never mutated, so readers need no lock: the changes, their
        # instants, and the covered span in POSIX seconds.
        self._table: tuple[list[_Change], list[int], int, int] = ([], [], 0, 0)
        self._lock = threading.Lock()

    def offset(self, moment: float) -> int:
        delta = dt.datetime.fromtimestamp(moment, self.tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    def next_change(self, moment: float) -> int:
        """The first change strictly after ``moment``, or the end of the covered span (at
        least a year ahead; a harmless stand-in, where the offset is simply read again)."""
        _, starts, start, end = self._table
        if not start <= moment < end - _YEAR_SECONDS:
            _, starts, start, end = self._cover(moment)
        index = bisect.bisect_right(starts, moment)
        return starts[index] if index < len(starts) else end

    def change_at_or_before(self, moment: float) -> _Change | None:
        changes, starts, start, end = self._table
        if not start + _YEAR_SECONDS <= moment < end:
            changes, starts, start, end = self._cover(moment)
        index = bisect.bisect_right(starts, moment) - 1
        return changes[index] if index >= 0 else None

    def _cover(self, moment: float) -> tuple[list[_Change], list[int], int, int]:
        year = _aware_utc(moment).year
        wanted = (max(year - 1, dt.MINYEAR + 1), min(year + 2, dt.MAXYEAR - 1))
        with self._lock:
            first, last = self._years
            if first <= wanted[0] and wanted[1] <= last:
                return self._table
            if last < first or wanted[0] > last + 50 or wanted[1] < first - 50:
                # Far from what is known: start a new span rather than fill decades.
                first, last, changes = wanted[0], wanted[1], []
                years = list(range(first, last + 1))
            else:
                changes = list(self._table[0])
                years = [*range(wanted[0], first), *range(last + 1, wanted[1] + 1)]
                first, last = min(first, wanted[0]), max(last, wanted[1])
            for each in years:
                changes.extend(self._find_changes(each))
            changes.sort(key=lambda change: change.at)
            self._table = (
                changes,
                [change.at for change in changes],
                calendar.timegm((first, 1, 1, 0, 0, 0)),
                calendar.timegm((last + 1, 1, 1, 0, 0, 0)),
            )
            self._years = (first, last)
            return self._table

    def _find_changes(self, year: int) -> list[_Change]:
        # Sample daily, then bisect to the second: real zones change at most a few times a year.
        start, end = (
            calendar.timegm((year, 1, 1, 0, 0, 0)),
            calendar.timegm((year + 1, 1, 1, 0, 0, 0)),
        )
        found = []
        low, low_offset = start - _DAY_SECONDS, self.offset(start - _DAY_SECONDS)
        while low < end:
            high = min(low + _DAY_SECONDS, end)
            high_offset = self.offset(high)
            if high_offset != low_offset:
                left, right = low, high  # offset(left) == low_offset != offset(right)
                while right - left > 1:
                    middle = (left + right) // 2
                    if self.offset(middle) == low_offset:
                        left = middle
                    else:
                        right = middle
                if start <= right < end:
                    found.append(_Change(at=right, before=low_offset, after=self.offset(right)))
            low, low_offset = high, high_offset
        return found


@lru_cache(maxsize=1024)
def _zone(name: str) -> _Zone:
    return _Zone(name)


# --- small conversions -------------------------------------------------------------------


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _timestamp(value: dt.datetime) -> float:
    return value.timestamp()


def _seconds(naive: dt.datetime) -> int:
    """Seconds since the epoch of a naive whole-minute wall time read as UTC."""
    return (naive - _EPOCH) // _SECOND


def _naive(moment: float) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=moment)


def _aware_utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, UTC)
