"""What moves or limits a periodic task's slots beyond its crontab or interval
(docs/task-files.md, "Spread, windows and calendars"): ``spread``, ``active`` and the
calendars of ``skip_on`` / ``only_on``.

``Timing`` is computed once per spec (``TaskSpec.timing``), so beat's hot path pays an
attribute read for tasks that use none of them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema, model_validator

from reconciler.core.calendars import CalendarEntry, DateSet
from reconciler.core.durations import (
    DURATION_HINT,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)
from reconciler.core.values import FieldError, FileModel, describe_value

MAX_SPREAD = dt.timedelta(days=1)
_WINDOW_HINT = "write a date (2027-01-01) or a date and time (2027-03-31T18:00) in the task's zone"


def _spread(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if not isinstance(value, str):
        raise FieldError(f"expected a duration, got {describe_value(value)}", hint=DURATION_HINT)
    return _spread_text(value)


@functools.lru_cache(maxsize=256)
def _spread_text(value: str) -> dt.timedelta:
    """A fleet writes a few spreads many times: each text is parsed once (refusals are
    not cached, so each is raised afresh)."""
    spread = parse_duration(value, allow_zero=True)
    if spread > MAX_SPREAD:
        raise FieldError(f"{value.strip()!r} is over the limit of 1d", hint="use at most 1d")
    return spread


Spread = Annotated[
    dt.timedelta,
    BeforeValidator(_spread),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""``spread: 10m``: 0s to 1d, stored as its canonical text."""


def spread_offset(name: str, spread: dt.timedelta) -> dt.timedelta:
    """The task's fixed offset in [0, spread), whole seconds, from a hash of its name: the
    same in every process, on every machine and after every restart."""
    seconds = int(spread.total_seconds())
    if seconds <= 0:
        return dt.timedelta(0)
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return dt.timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def _moment(value: Any) -> str:
    """A window end as stored: ``2027-01-01`` or ``2027-03-31T18:00:00`` (an offset if written)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text).isoformat()
            return dt.datetime.fromisoformat(text).isoformat()
        except ValueError:
            raise FieldError(f"{text!r} is not a date or time", hint=_WINDOW_HINT) from None
    raise FieldError(f"expected a date or time, got {describe_value(value)}", hint=_WINDOW_HINT)


Moment = Annotated[
    str,
    BeforeValidator(_moment),
    WithJsonSchema({"type": "string", "description": "a date or an ISO 8601 date and time"}),
]


def window_start(text: str, zone: ZoneInfo) -> dt.datetime:
    """The first instant of the window: a date is its midnight in ``zone``."""
    if len(text) == 10:
        return _local(dt.datetime.combine(dt.date.fromisoformat(text), dt.time()), zone)
    return _local(dt.datetime.fromisoformat(text), zone)


def window_end(text: str, zone: ZoneInfo) -> dt.datetime:
    """The first instant after the window: a date includes its whole day."""
    if len(text) == 10:
        return day_end(dt.date.fromisoformat(text), zone)
    return _local(dt.datetime.fromisoformat(text), zone) + dt.timedelta(microseconds=1)


def day_end(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The first instant after ``day`` in ``zone``: the next day's midnight (its first
    occurrence, or the first instant after it when a DST change skips it)."""
    return _local(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()), zone)


def _local(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    # A wall time that occurs twice means its first occurrence (fold 0), as for ``at``.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return aware.astimezone(dt.UTC)


class Window(FileModel):
    """``active: {from, until}``: no slot before ``from`` or after ``until`` (either may be
    left out); a date alone is the start (``from``) or the whole day (``until``)."""

    from_: Annotated[Moment | None, Field(alias="from")] = None
    until: Moment | None = None

    model_config = {**FileModel.model_config, "populate_by_name": True, "serialize_by_alias": True}

    @model_validator(mode="after")
    def _some_end(self) -> Window:
        if self.from_ is None and self.until is None:
            raise FieldError(
                "needs 'from', 'until' or both", hint="e.g. active: {from: 2027-01-01}"
            )
        return self


# --- per spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """A spec's spread, window and calendars, ready for the schedule's arithmetic."""

    zone: ZoneInfo
    spread: dt.timedelta = dt.timedelta(0)
    offset: dt.timedelta = dt.timedelta(0)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    skip: tuple[tuple[str, DateSet], ...] = ()
    only: tuple[tuple[str, DateSet], ...] = ()
    # Spread slots already given out or asked from (slot -> its plain slot), bounded: the
    # slot after a fired one then starts from the plain slot after that one, without a
    # search, for every task that shares this spec's schedule.
    bases: dict[dt.datetime, dt.datetime] = field(default_factory=dict, compare=False)

    @property
    def moves(self) -> bool:
        """True when slots differ from the plain schedule's (spread or a window)."""
        return bool(self.spread) or self.start is not None or self.end is not None

    @property
    def calendars(self) -> bool:
        return bool(self.skip or self.only)

    def day_end(self, instant: dt.datetime) -> dt.datetime:
        """The first instant after the date of ``instant`` in the task's zone: calendars
        judge dates, so every slot before it shares the verdict of ``instant``."""
        return day_end(instant.astimezone(self.zone).date(), self.zone)

    def dropped(self, slot: dt.datetime) -> str | None:
        """Why a calendar drops ``slot`` (its date in the task's zone), or None."""
        day = slot.astimezone(self.zone).date()
        for name, days in self.skip:
            if day in days:
                return f"{day.isoformat()} is on calendar {name} (skip_on)"
        if self.only and not any(day in days for _, days in self.only):
            names = ", ".join(name for name, _ in self.only)
            return f"{day.isoformat()} is not on calendar {names} (only_on)"
        return None


def timing_of(
    name: str,
    zone: ZoneInfo,
    spread: dt.timedelta | None,
    active: Window | None,
    skip_on: Sequence[str],
    only_on: Sequence[str],
    calendars: Mapping[str, Sequence[CalendarEntry]] | None,
) -> Timing:
    known = calendars or {}
    sets = {cal: DateSet.of(known.get(cal, ())) for cal in (*skip_on, *only_on)}
    spread = spread or dt.timedelta(0)
    return Timing(
        zone,
        spread,
        spread_offset(name, spread),
        window_start(active.from_, zone) if active and active.from_ else None,
        window_end(active.until, zone) if active and active.until else None,
        tuple((cal, sets[cal]) for cal in skip_on),
        tuple((cal, sets[cal]) for cal in only_on),
    )
