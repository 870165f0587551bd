"""Time zones: the IANA names a task may use, and each zone's UTC offsets and the
instants they change, which the crontab search steps over (docs/beat.md).
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import difflib
import functools
import threading
from dataclasses import dataclass
from importlib import resources
from zoneinfo import ZoneInfo, available_timezones

_EPOCH = dt.datetime(1970, 1, 1)
_SECOND = dt.timedelta(seconds=1)
_DAY_SECONDS = 86_400
_YEAR_SECONDS = 366 * _DAY_SECONDS


# --- names -------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.cache
def iana_zones() -> frozenset[str]:
    """The zone names of the IANA database (the ``tzdata`` package's list), the same on
    every host; ``available_timezones`` would add the host's files such as ``localtime``."""
    try:
        text = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):  # pragma: no cover - tzdata is a dependency
        return frozenset(available_timezones())
    return frozenset(text.split())


def zone_hint(name: str) -> str:
    """How to fix an unknown zone name: the closest IANA name, or an example."""
    close = difflib.get_close_matches(name, sorted(iana_zones()), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "use an IANA name such as 'Europe/Berlin' or 'UTC'"


# --- offsets and the instants they change ------------------------------------------------


@dataclass(frozen=True)
class Change:
    at: int  # POSIX seconds of the first instant with the new offset
    before: int  # UTC offsets in seconds
    after: int


class ZoneChanges:
    """A zone's offset changes over a span of years, found once and kept (zoneinfo does not
    list them); the span grows to cover the instants asked about."""

    def __init__(self, name: str) -> None:
        self.tz = ZoneInfo(name)
        self._years = (0, -1)  # first and last year covered; none yet
        # Replaced whole, never mutated, so readers need no lock: the changes, their
        # instants, and the covered span in POSIX seconds.
        self._table: tuple[list[Change], list[int], int, int] = ([], [], 0, 0)
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

    def change_at_or_before(self, moment: float) -> Change | None:
        changes, starts, start, end = self._table
        if not start + _YEAR_SECONDS <= moment < end:
            changes, starts, start, end = self._cover(moment)
        index = bisect.bisect_right(starts, moment) - 1
        return changes[index] if index >= 0 else None

    def _cover(self, moment: float) -> tuple[list[Change], list[int], int, int]:
        year = aware_utc(moment).year
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

    def _find_changes(self, year: int) -> list[Change]:
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
                    found.append(Change(at=right, before=low_offset, after=self.offset(right)))
            low, low_offset = high, high_offset
        return found


@functools.lru_cache(maxsize=1024)
def zone_changes(name: str) -> ZoneChanges:
    return ZoneChanges(name)


# --- conversions ---------------------------------------------------------------------------


def wall_seconds(naive: dt.datetime) -> int:
    """Seconds since the epoch of a naive whole-minute wall time read as UTC."""
    return (naive - _EPOCH) // _SECOND


def naive(moment: float) -> dt.datetime:
    """The naive datetime ``moment`` seconds after the epoch (the inverse of ``wall_seconds``)."""
    return _EPOCH + dt.timedelta(seconds=moment)


def aware_utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.UTC)
