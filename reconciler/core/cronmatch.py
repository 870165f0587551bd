"""Crontab matching on wall-clock time: the fields expanded to sets of values, and the
search for the next wall time they match, then the instant it fires in a task's zone.

The rules: docs/beat.md, "Schedules" and "Daylight saving time". Crontab, on
wall-clock time in the task's zone (W is a wall time the five fields match):

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
from dataclasses import dataclass, field
from functools import lru_cache

from reconciler.core.cronsyntax import CRON_FIELDS
from reconciler.core.schedulefields import Crontab
from reconciler.core.zones import ZoneChanges, aware_utc, naive, wall_seconds

_MINUTE = dt.timedelta(minutes=1)
# Any date a crontab can match recurs within 8 years (29 February around 2100).
_SEARCH_YEARS = 9
_LAST_MOMENT = calendar.timegm((dt.MAXYEAR, 12, 30, 0, 0, 0))


def never_fires(crontab: Crontab) -> bool:
    """True when no date matches the day and month fields (``0 0 30 2 *``): searched
    from 2000 over the years in which every date recurs, leap days included."""
    return compiled(crontab).next_wall(dt.datetime(2000, 1, 1), inclusive=True) is None


@dataclass
class CronMatch:
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

    def after(self, zone: ZoneChanges, instant: dt.datetime) -> dt.datetime | None:
        """The first fire strictly after ``instant`` under the DST rules of the module docstring."""
        if instant.timestamp() >= _LAST_MOMENT:  # no local date past year 9999 exists
            return None
        return (
            self._after_elapsed(zone, instant) if self.elapsed else self._after_fixed(zone, instant)
        )

    def _after_fixed(self, zone: ZoneChanges, instant: dt.datetime) -> dt.datetime | None:
        local = instant.astimezone(zone.tz)
        wall, inclusive = local.replace(tzinfo=None), False
        if local.fold:
            # The second pass of a repeated hour: every wall time up to the moment the clock
            # was set back was already shown (and fired) in the first pass.
            change = zone.change_at_or_before(instant.timestamp())
            if change is not None:
                wall, inclusive = naive(change.at + change.before), True
        match = self.next_wall(wall, inclusive)
        if match is None:
            return None
        first = match.replace(tzinfo=zone.tz).astimezone(dt.UTC)  # fold=0: the first occurrence
        if first.astimezone(zone.tz).replace(tzinfo=None) == match:
            return first
        # A wall time inside a gap: zoneinfo placed it after the change; fire at the change.
        change = zone.change_at_or_before(first.timestamp())
        return first if change is None else aware_utc(change.at)

    def _after_elapsed(self, zone: ZoneChanges, instant: dt.datetime) -> dt.datetime | None:
        # Walk the spans of constant UTC offset; within one, wall time and instant move together.
        moment, inclusive = instant.timestamp(), False
        for _ in range(8 * _SEARCH_YEARS):
            if moment >= _LAST_MOMENT:
                return None
            offset = zone.offset(moment)
            span_end = zone.next_change(moment)
            match = self.next_wall(naive(moment + offset), inclusive)
            if match is None:
                return None
            fire = wall_seconds(match) - offset
            if fire < span_end:
                return aware_utc(fire)
            moment, inclusive = span_end, True
        return None


@lru_cache(maxsize=4096)
def compiled(crontab: Crontab) -> CronMatch:
    """The crontab's field sets, expanded once per distinct crontab."""
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
    return CronMatch(
        minutes=sets[0],
        hours=sets[1],
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(sets[4]),
        full=tuple(full),
        elapsed="*" in hour_text or "/" in hour_text,
    )


def _expand(text: str, low: int, high: int) -> tuple[int, ...]:
    """The values of one canonical field (``Crontab`` checked its syntax): items
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
