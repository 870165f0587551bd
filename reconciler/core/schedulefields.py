"""A task's schedule fields (docs/task-files.md): the crontab and its syntax, the
interval, the range of ``at``; and the schedule in one line, as the task list shows it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StrictInt, field_validator, model_validator

from reconciler.core.cronsyntax import (
    CRON_ORDER,
    check_cron_field,
    split_cron_expression,
)
from reconciler.core.durations import DURATION_HINT, format_duration, parse_duration
from reconciler.core.values import FieldError, FileModel, describe_value
from reconciler.core.zones import zone
from reconciler.vocabulary import TaskType

# ``at`` must be a real local time in every zone (offsets stay well within a day).
AT_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
AT_MAX = dt.datetime(9999, 12, 30, 23, 59, 59, tzinfo=dt.UTC)

# --- crontab ---------------------------------------------------------------------------


class Crontab(FileModel):
    """Five cron fields; each defaults to ``*``. Month 1-12 or JAN-DEC, day of week 0-7
    (0 and 7 = Sunday) or SUN-SAT, names in any case; stored as numbers, Sunday as 0."""

    minute: str = "*"
    hour: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    day_of_week: str = "*"

    @field_validator("*", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("*")
    @classmethod
    def _check(cls, value: str, info: Any) -> str:
        return check_cron_field(info.field_name, value)

    @classmethod
    def parse(cls, expression: str) -> Crontab:
        return cls(**split_cron_expression(expression))

    @functools.cached_property
    def expression(self) -> str:
        """The classic five-field form, e.g. ``0 9 * * 1`` (frozen, so kept once made: beat
        keys remembered slots by it)."""
        return " ".join(getattr(self, name) for name in CRON_ORDER)


# --- interval --------------------------------------------------------------------------


INTERVAL_PARTS: tuple[tuple[str, int], ...] = (
    ("days", 86_400),
    ("hours", 3_600),
    ("minutes", 60),
    ("seconds", 1),
)
# The longest interval the old form's ranges could express.
INTERVAL_MAX = dt.timedelta(days=365, hours=23, minutes=59, seconds=59)


class Interval(FileModel):
    """A fixed period, above 0: a duration such as ``90m``, ``1h30m``, ``2d``, or days, hours,
    minutes and seconds; over-full parts are carried (``{minutes: 90}`` is 1 h 30 min)."""

    days: Annotated[StrictInt, Field(ge=0, le=365)] = 0
    hours: Annotated[StrictInt, Field(ge=0)] = 0
    minutes: Annotated[StrictInt, Field(ge=0)] = 0
    seconds: Annotated[StrictInt, Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        """A duration string or whole, non-negative parts -> parts within a day, an hour, a
        minute; anything else is left for the fields' own checks to name."""
        if isinstance(value, str):
            return _parts(parse_duration(value), value.strip())
        if isinstance(value, (bool, int, float, list)):
            whole = isinstance(value, int) and not isinstance(value, bool)
            raise FieldError(
                f"expected a duration or a mapping, got {describe_value(value)}",
                hint=f"give it a unit: {value}s, {value}m or {value}h" if whole else DURATION_HINT,
            )
        if not isinstance(value, Mapping) or not set(value) <= {k for k, _ in INTERVAL_PARTS}:
            return value
        parts = [value.get(key, 0) for key, _ in INTERVAL_PARTS]
        if not all(type(part) is int and part >= 0 for part in parts):
            return value
        if value.get("days", 0) > INTERVAL_MAX.days:
            return value  # the days field says so
        total = sum(part * size for part, (_, size) in zip(parts, INTERVAL_PARTS, strict=True))
        written = "".join(
            f"{part}{key[0]}" for part, (key, _) in zip(parts, INTERVAL_PARTS, strict=True) if part
        )
        return _parts(dt.timedelta(seconds=total), written or "0s")

    @model_validator(mode="after")
    def _not_zero(self) -> Interval:
        if self.total_seconds == 0:
            raise FieldError(
                "must be above 0", hint="set at least one of days, hours, minutes, seconds"
            )
        return self

    @property
    def total_seconds(self) -> int:
        return ((self.days * 24 + self.hours) * 60 + self.minutes) * 60 + self.seconds

    @property
    def timedelta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.total_seconds)

    @property
    def text(self) -> str:
        """The canonical duration text (``1h30m``) the plan, the task list and ``next`` show."""
        return format_duration(self.timedelta)


def _parts(duration: dt.timedelta, written: str) -> dict[str, int]:
    """``duration`` as the stored parts, or FieldError when it is longer than the old form's
    longest interval."""
    if duration > INTERVAL_MAX:
        longest = format_duration(INTERVAL_MAX)
        raise FieldError(
            f"{written} is longer than the longest interval, {longest}",
            hint=f"use at most {longest}, or a crontab for a yearly schedule",
        )
    rest = duration.days * 86_400 + duration.seconds
    parts: dict[str, int] = {}
    for key, size in INTERVAL_PARTS:
        parts[key], rest = divmod(rest, size)
    return parts


# --- at ----------------------------------------------------------------------------------


def at_in_utc(at: dt.datetime, timezone: str) -> dt.datetime:
    """``at`` as UTC (naive: in ``timezone``), or FieldError when some zone could not
    show it as a date (the year would leave 1-9999)."""
    limits = f"{AT_MIN.isoformat()} and {AT_MAX.isoformat()}"
    try:
        aware = at if at.tzinfo is not None else at.replace(tzinfo=zone(timezone))
        utc = aware.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise FieldError(
            f"{at.isoformat()} is out of range: it must lie between {limits}",
            loc=("at",),
            hint="use a time between 0001-01-02 and 9999-12-30 (UTC)",
        ) from exc
    if not AT_MIN <= utc <= AT_MAX:
        raise FieldError(
            f"{utc.isoformat()} is out of range: it must lie between {limits}, so that "
            f"it is a date in every time zone",
            loc=("at",),
            hint="use a time between 0001-01-02 and 9999-12-30 (UTC)",
        )
    return utc


# --- the schedule in one line ----------------------------------------------------------

_INTERVAL_UNITS = (("days", "d"), ("hours", "h"), ("minutes", "m"), ("seconds", "s"))
# The shapes of the one-line form besides a crontab's five fields, which
# ``core.describe.schedule_words`` reads back into words.
INTERVAL_PREFIX = "every "
AT_PREFIX = "at "
ASYNC_TEXT = "once, when applied"


def schedule_text(spec: Mapping[str, Any]) -> str | None:
    """The schedule in one short string: ``0 1 * * *``, ``every 1h30m``, ``at …``, ``once``.

    ``spec`` is the JSON form of a task spec (as stored in ``tasks.spec``); only
    ``type``, ``crontab``, ``interval`` and ``at`` are read. Working on the JSON form
    lets the store compute it for rows it never validates (the migration's backfill).
    """
    crontab = spec.get("crontab")
    if isinstance(crontab, Mapping):
        return " ".join(str(crontab.get(field, "*")) for field in CRON_ORDER)
    interval = spec.get("interval")
    if isinstance(interval, Mapping):
        parts = "".join(
            f"{interval[key]}{unit}" for key, unit in _INTERVAL_UNITS if interval.get(key)
        )
        return f"{INTERVAL_PREFIX}{parts}"
    at = spec.get("at")
    if at:
        return f"{AT_PREFIX}{at}"
    if spec.get("type") == TaskType.ASYNC:
        return ASYNC_TEXT
    return None


class _ScheduleFields(FileModel):
    """The fields ``schedule_text`` reads, typed as in TaskSpec so they dump to the same JSON."""

    type: TaskType
    crontab: Crontab | None
    interval: Interval | None
    at: dt.datetime | None


@functools.lru_cache(maxsize=4096)
def schedule_text_of(
    type: TaskType, crontab: Crontab | None, interval: Interval | None, at: dt.datetime | None
) -> str | None:
    """``schedule_text`` of the JSON form of a spec's schedule fields.

    Tasks share a few schedules, so most specs find theirs here. The key's parts are
    frozen models and an ``at`` the spec has already turned into UTC (datetimes at
    different offsets compare equal, so another zone could share the key).
    """
    fields = _ScheduleFields.model_construct(type=type, crontab=crontab, interval=interval, at=at)
    return schedule_text(fields.model_dump(mode="json"))
