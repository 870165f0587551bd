"""A task's schedule fields (docs/task-files.md): the crontab and its syntax, the
interval, the range of ``at``; and the schedule in one line, as the task list shows it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StrictInt, field_validator, model_validator

from reconciler.core.values import FieldError, FileModel
from reconciler.core.zones import zone
from reconciler.vocabulary import TaskType

# ``at`` must be a real local time in every zone (offsets stay well within a day).
AT_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
AT_MAX = dt.datetime(9999, 12, 30, 23, 59, 59, tzinfo=dt.UTC)

# --- crontab ---------------------------------------------------------------------------

CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day_of_month", 1, 31),
    ("month_of_year", 1, 12),
    ("day_of_week", 0, 6),
)
_CRON_RANGES = {name: (low, high) for name, low, high in CRON_FIELDS}
_CRON_ORDER = tuple(name for name, _, _ in CRON_FIELDS)
# ASCII digits only: ``\d`` would take Arabic-Indic or full-width digits and store them as written.
_CRON_ITEM = re.compile(r"^(\*|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?$")


def check_cron_field(field: str, text: str) -> str:
    """Return the canonical text of one crontab field, or raise ValueError saying why.

    Messages leave out the field's name: the caller's location names it.
    """
    low, high = _CRON_RANGES[field]
    canonical = text.replace(" ", "")
    if not canonical:
        raise FieldError("is empty", hint="use '*' for every value")
    for item in canonical.split(","):
        match = _CRON_ITEM.match(item)
        if match is None and any(ch.isdigit() and not ch.isascii() for ch in item):
            raise FieldError(
                f"{item!r} uses digits other than ASCII 0-9", hint="write the number as 0-9"
            )
        if match is None:
            raise FieldError(
                f"{item!r} is not a cron value",
                hint="use a number, '*', a range 'a-b', a step '*/n' or a list 'a,b'",
            )
        star, first, last, step = (
            match.group(1) == "*",
            match.group(2),
            match.group(3),
            match.group(4),
        )
        if not star:
            for number in (first, last):
                if number is not None and not low <= int(number) <= high:
                    raise FieldError(f"must be {low}-{high}, got {number}")
            if last is not None and int(last) < int(first):
                raise FieldError(f"range {first}-{last} runs backwards")
        if step is not None and int(step) < 1:
            raise FieldError(f"step must be at least 1, got {step}")
    return canonical


def split_cron_expression(expression: str) -> dict[str, str]:
    """``"0 9 * * 1"`` -> the five named fields, or ValueError when it has not five parts."""
    parts = expression.split()
    if len(parts) != 5:
        raise FieldError(
            f"needs 5 fields, got {len(parts)} in {expression!r}",
            hint="minute hour day_of_month month_of_year day_of_week, e.g. '0 9 * * 1'",
        )
    return dict(zip(_CRON_ORDER, parts, strict=True))


class Crontab(FileModel):
    """Five cron fields; each defaults to ``*``. Day of week 0-6, 0 = Sunday."""

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

    @property
    def expression(self) -> str:
        """The classic five-field form, e.g. ``0 9 * * 1``."""
        return " ".join(getattr(self, name) for name in _CRON_ORDER)


# --- interval --------------------------------------------------------------------------


class Interval(FileModel):
    """A fixed period; at least one part above 0."""

    days: Annotated[StrictInt, Field(ge=0, le=365)] = 0
    hours: Annotated[StrictInt, Field(ge=0, le=23)] = 0
    minutes: Annotated[StrictInt, Field(ge=0, le=59)] = 0
    seconds: Annotated[StrictInt, Field(ge=0, le=59)] = 0

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


def schedule_text(spec: Mapping[str, Any]) -> str | None:
    """The schedule in one short string: ``0 1 * * *``, ``every 1h30m``, ``at …``, ``once``.

    ``spec`` is the JSON form of a task spec (as stored in ``tasks.spec``); only
    ``type``, ``crontab``, ``interval`` and ``at`` are read. Working on the JSON form
    lets the store compute it for rows it never validates (the migration's backfill).
    """
    crontab = spec.get("crontab")
    if isinstance(crontab, Mapping):
        return " ".join(str(crontab.get(field, "*")) for field in _CRON_ORDER)
    interval = spec.get("interval")
    if isinstance(interval, Mapping):
        parts = "".join(
            f"{interval[key]}{unit}" for key, unit in _INTERVAL_UNITS if interval.get(key)
        )
        return f"every {parts}"
    at = spec.get("at")
    if at:
        return f"at {at}"
    if spec.get("type") == TaskType.ASYNC:
        return "once, when applied"
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
