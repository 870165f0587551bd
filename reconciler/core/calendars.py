"""Calendars as code: ``kind: calendar`` documents and the dates a task's ``skip_on`` /
``only_on`` name (docs/task-files.md, "Calendars").

A calendar's entries are stored in one canonical JSON shape: a date ``"2026-12-25"``, a
range ``{"from": "2026-12-24", "until": "2026-12-31"}`` (both days included) or a yearly
day ``{"every_year": "12-25"}``, sorted and without repeats, so reordering them plans no
change. Each task carries the entries of the calendars it uses in its stored spec; the
sets they are matched with are shared by every task that names the same entries.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator

from reconciler.core.values import FieldError, FileModel, check_text, describe_value

CALENDAR_KIND = "calendar"
CALENDAR_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
_CALENDAR_NAME = re.compile(CALENDAR_NAME_PATTERN)
MAX_ENTRIES = 10_000
_MONTH_DAY = re.compile(r"(\d{2})-(\d{2})")
_DATE_HINT = (
    "write a date like 2026-12-25, {from: 2026-12-24, until: 2026-12-31} or {every_year: 12-25}"
)

CalendarEntry = str | dict[str, str]
"""A date, a range or a yearly day, in the stored shape (module docstring)."""


def _date(value: Any, loc: tuple[str | int, ...] = ()) -> dt.date:
    if isinstance(value, dt.datetime):
        raise FieldError(
            f"expected a date, got a timestamp ({value.isoformat()})",
            loc=loc,
            hint="calendars hold whole days: drop the time",
        )
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise FieldError(f"{value.strip()!r} is not a date", loc=loc, hint=_DATE_HINT) from None
    raise FieldError(f"expected a date, got {describe_value(value)}", loc=loc, hint=_DATE_HINT)


def _month_day(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    found = _MONTH_DAY.fullmatch(text)
    if found is None:
        raise FieldError(
            f"expected a month and day MM-DD, got {describe_value(value)}",
            loc=("every_year",),
            hint="write it like 12-25 (December 25) or 05-01",
        )
    try:
        dt.date(2000, int(found[1]), int(found[2]))  # 2000: a leap year, so 02-29 is a day
    except ValueError:
        raise FieldError(
            f"{text!r} is not a day of the year",
            loc=("every_year",),
            hint="check the month and day",
        ) from None
    return text


def _entry(value: Any) -> CalendarEntry:
    """One entry of ``dates`` in its stored shape, or a FieldError saying how to write it."""
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"every_year"}:
            return {"every_year": _month_day(value["every_year"])}
        if keys == {"from", "until"}:
            start = _date(value["from"], ("from",))
            end = _date(value["until"], ("until",))
            if end < start:
                raise FieldError(
                    f"{end.isoformat()} is before from ({start.isoformat()})",
                    loc=("until",),
                    hint="swap them",
                )
            return {"from": start.isoformat(), "until": end.isoformat()}
        unknown = sorted(str(key) for key in keys - {"from", "until", "every_year"})
        what = f"unknown field {unknown[0]!r}" if unknown else "incomplete entry"
        raise FieldError(
            f"{what}: an entry is a date, {{from, until}} or {{every_year}}", hint=_DATE_HINT
        )
    return _date(value).isoformat()


def _sort_key(entry: CalendarEntry) -> tuple[str, str]:
    if isinstance(entry, str):
        return (entry, "")
    if "every_year" in entry:
        return ("~" + entry["every_year"], "")
    return (entry["from"], entry["until"])


def canonical_entries(entries: Iterable[CalendarEntry]) -> list[CalendarEntry]:
    """``entries`` sorted (dates and ranges by their first day, yearly days last), no repeats."""
    unique: dict[tuple[str, str], CalendarEntry] = {}
    for entry in entries:
        unique.setdefault(_sort_key(entry), entry)
    return [unique[key] for key in sorted(unique)]


Entry = Annotated[
    CalendarEntry,
    BeforeValidator(_entry),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "format": "date"},
                {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "format": "date"},
                        "until": {"type": "string", "format": "date"},
                    },
                    "required": ["from", "until"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"every_year": {"type": "string", "pattern": r"^\d{2}-\d{2}$"}},
                    "required": ["every_year"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class Calendar(FileModel):
    """A named set of days that tasks skip (``skip_on``) or keep to (``only_on``)."""

    kind: Literal["calendar"]
    name: Annotated[str, Field(pattern=CALENDAR_NAME_PATTERN)]
    description: Annotated[str, Field(max_length=4000)] = ""
    dates: Annotated[list[Entry], Field(max_length=MAX_ENTRIES)]

    @field_validator("description")
    @classmethod
    def _text(cls, value: str) -> str:
        check_text(value, multiline=True)
        return value

    @property
    def entries(self) -> list[CalendarEntry]:
        return canonical_entries(self.dates)


def check_calendar_refs(value: list[str]) -> list[str]:
    """``skip_on`` / ``only_on``: calendar names, each once."""
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not _CALENDAR_NAME.fullmatch(name):
            raise FieldError(
                f"{name!r} is not a calendar name",
                loc=(index,),
                hint="calendar names are lowercase letters, digits, '.', '_' or '-'",
            )
        if name in seen:
            raise FieldError(f"{name!r} is listed twice", loc=(index,), hint="list it once")
        seen.add(name)
    return value


# --- matching --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, weakref_slot=True, eq=False)
class DateSet:
    """The days of one calendar, for a membership test per slot: O(1) by a table of the
    year's days, built the first time a date of that year is asked about.

    One object per distinct calendar (``DateSet.of``), however many tasks name it, so
    each year's table is built once; a range costs the same whatever its length.
    """

    days: frozenset[int]
    """Single dates, as ordinals."""
    yearly: frozenset[tuple[int, int]]
    """``every_year`` days as (month, day)."""
    ranges: tuple[tuple[int, int], ...]
    """``from``/``until`` as ordinals, both included."""
    _years: dict[int, tuple[int, bytes]] = field(default_factory=dict, compare=False)
    """Per year asked about: its first day's ordinal and a byte per day, 1 on the calendar."""

    @classmethod
    def of(cls, entries: Sequence[CalendarEntry]) -> DateSet:
        """The shared set of ``entries``: the same object for equal entries while any
        task holds it."""
        key = tuple(
            entry if isinstance(entry, str) else tuple(sorted(entry.items())) for entry in entries
        )
        with _SHARED_LOCK:
            found = _SHARED.get(key)
            if found is None:
                found = _SHARED[key] = cls._build(entries)
        return found

    @classmethod
    def _build(cls, entries: Sequence[CalendarEntry]) -> DateSet:
        days: set[int] = set()
        yearly: set[tuple[int, int]] = set()
        ranges: list[tuple[int, int]] = []
        for entry in entries:
            if isinstance(entry, str):
                days.add(dt.date.fromisoformat(entry).toordinal())
            elif "every_year" in entry:
                month, day = entry["every_year"].split("-")
                yearly.add((int(month), int(day)))
            else:
                first = dt.date.fromisoformat(entry["from"]).toordinal()
                last = dt.date.fromisoformat(entry["until"]).toordinal()
                ranges.append((first, last))
        return cls(frozenset(days), frozenset(yearly), tuple(ranges))

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, dt.date):
            return False
        known = self._years.get(day.year)
        if known is None:
            known = self._years[day.year] = self._year(day.year)
        first, table = known
        return table[day.toordinal() - first] == 1

    def _year(self, year: int) -> tuple[int, bytes]:
        first = dt.date(year, 1, 1).toordinal()
        last = dt.date(year, 12, 31).toordinal()
        table = bytearray(last - first + 1)
        for ordinal in self.days:
            if first <= ordinal <= last:
                table[ordinal - first] = 1
        for month, day in self.yearly:
            try:
                table[dt.date(year, month, day).toordinal() - first] = 1
            except ValueError:  # 02-29 outside a leap year
                continue
        for start, end in self.ranges:
            low, high = max(start, first), min(end, last)
            if low <= high:
                table[low - first : high - first + 1] = b"\x01" * (high - low + 1)
        return first, bytes(table)


_SHARED: weakref.WeakValueDictionary[tuple[object, ...], DateSet] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
