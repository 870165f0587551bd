"""The task model: one validated, normalised task definition (DESIGN §1).

Pydantic models only; no file, database or Celery access. The loader builds these
from YAML; the plan, the store and the scheduler receive them already trusted.
Equal meanings compare equal: crontab strings and mappings, interval parts and
defaults are normalised on the way in.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
RESERVED_NAMES = frozenset({"registered", "executions"})

TaskType = Literal["async", "scheduled", "periodic"]

JSONValue = Any
"""A plain JSON value: null, bool, number, string, list or string-keyed mapping."""


class FieldError(ValueError):
    """A validation failure that knows where it belongs.

    ``loc`` is the path below the field (or model) whose validator raised it, so the
    loader can point at the offending key or value; ``hint`` says how to fix it.
    """

    def __init__(self, message: str, *, loc: tuple[str | int, ...] = (), hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- crontab ---------------------------------------------------------------------------

CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day_of_month", 1, 31),
    ("month_of_year", 1, 12),
    ("day_of_week", 0, 6),
)
_CRON_RANGES = {name: (low, high) for name, low, high in CRON_FIELDS}
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


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
    return dict(zip([name for name, _, _ in CRON_FIELDS], parts, strict=True))


class Crontab(_Model):
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
        return " ".join(getattr(self, name) for name, _, _ in CRON_FIELDS)


# --- interval --------------------------------------------------------------------------


class Interval(_Model):
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


# --- options ---------------------------------------------------------------------------


class Options(_Model):
    """Passed to ``apply_async``."""

    queue: str | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=9)] | None = None
    expires: Annotated[StrictInt, Field(gt=0)] | None = None
    time_limit: Annotated[StrictInt, Field(gt=0)] | None = None
    soft_time_limit: Annotated[StrictInt, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _soft_below_hard(self) -> Options:
        if (
            self.time_limit is not None
            and self.soft_time_limit is not None
            and self.soft_time_limit > self.time_limit
        ):
            raise FieldError(
                f"must not exceed time_limit ({self.time_limit})", loc=("soft_time_limit",)
            )
        return self

    def apply_async_kwargs(self) -> dict[str, Any]:
        return {key: value for key, value in self.model_dump().items() if value is not None}


# --- the task --------------------------------------------------------------------------


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
    dt.datetime: "a timestamp",
    dt.date: "a date",
}


def describe_value(value: Any) -> str:
    """How a YAML user would name this value: ``an integer (5)``, ``a list``."""
    name = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
    if isinstance(value, (list, dict)) or value is None:
        return name
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{name} ({text})"


def _check_json(value: Any, loc: tuple[str | int, ...]) -> None:
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FieldError(f"{value} is not a JSON number", loc=loc, hint="use a finite number")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, (*loc, index))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(
                    f"key {key!r} is {describe_value(key)}, not a string",
                    loc=loc,
                    hint=f"quote the key: '{key}'",
                )
            _check_json(item, (*loc, key))
        return
    if isinstance(value, dt.date):
        raise FieldError(
            f"{describe_value(value)} is not a plain JSON value",
            loc=loc,
            hint=f"quote it to pass it as a string: '{value.isoformat()}'",
        )
    raise FieldError(f"{describe_value(value)} is not a plain JSON value", loc=loc)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _zone_hint(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "use an IANA name such as 'Europe/Berlin' or 'UTC'"


class TaskSpec(_Model):
    """One task definition, normalised."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    owner: Annotated[str, Field(min_length=1)]
    type: TaskType
    task: Annotated[str, Field(min_length=1, pattern=r"^\S+$")]
    args: list[JSONValue] = Field(default_factory=list)
    kwargs: dict[str, JSONValue] = Field(default_factory=dict)
    enabled: StrictBool = True
    crontab: Crontab | None = None
    interval: Interval | None = None
    at: dt.datetime | None = None
    timezone: str = "UTC"
    options: Options = Field(default_factory=Options)
    overlap: Literal["allow", "skip"] = "allow"
    catchup: Literal["skip", "once"] = "skip"
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise FieldError(
                f"{value!r} is reserved (it is a path of the HTTP API)", hint="choose another name"
            )
        return value

    @field_validator("crontab", mode="before")
    @classmethod
    def _crontab_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_cron_expression(value)
        return value

    @field_validator("at", mode="before")
    @classmethod
    def _at_is_a_time(cls, value: Any) -> Any:
        # pydantic would read a bare number as a Unix timestamp; the format says ISO 8601.
        if value is None or isinstance(value, (str, dt.date)):
            return value
        raise FieldError(
            f"expected an ISO 8601 date and time, got {describe_value(value)}",
            hint="write it like 2025-12-02T15:00:00Z (no offset means the task's timezone)",
        )

    @field_validator("args")
    @classmethod
    def _args_json(cls, value: list[Any]) -> list[Any]:
        _check_json(value, ())
        return value

    @field_validator("kwargs")
    @classmethod
    def _kwargs_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, ())
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise FieldError(f"unknown time zone {value!r}", hint=_zone_hint(value)) from exc
        return value

    @model_validator(mode="after")
    def _schedule_fits_type(self) -> TaskSpec:
        given = [f for f in ("crontab", "interval", "at") if getattr(self, f) is not None]
        allowed = {"async": set(), "scheduled": {"at"}, "periodic": {"crontab", "interval"}}[
            self.type
        ]
        fits = {
            "async": "no schedule field",
            "scheduled": "'at'",
            "periodic": "'crontab' or 'interval'",
        }[self.type]
        for field in given:
            if field not in allowed:
                raise FieldError(
                    f"does not fit type {self.type!r}, which takes {fits}",
                    loc=(field,),
                    hint=f"remove {field!r} or change the type",
                )
        if self.type == "scheduled" and self.at is None:
            raise FieldError(
                "'scheduled' needs 'at'",
                loc=("type",),
                hint="add e.g. at: 2025-12-02T15:00:00Z",
            )
        if self.type == "periodic" and not given:
            raise FieldError(
                "'periodic' needs 'crontab' or 'interval'",
                loc=("type",),
                hint="add e.g. crontab: '0 9 * * 1' or interval: {minutes: 5}",
            )
        if self.type == "periodic" and len(given) > 1:
            raise FieldError(
                "'periodic' takes one of 'crontab' or 'interval', not both",
                loc=(given[1],),
                hint=f"remove {given[1]!r} or {given[0]!r}",
            )
        if self.at is not None:
            at = (
                self.at
                if self.at.tzinfo is not None
                else self.at.replace(tzinfo=zone(self.timezone))
            )
            object.__setattr__(self, "at", at.astimezone(dt.UTC))
        return self

    # --- derived -------------------------------------------------------------------------

    def canonical(self) -> dict[str, Any]:
        """The JSON form stored in the database and compared by the plan."""
        return self.model_dump(mode="json")

    @property
    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @functools.cached_property
    def schedule_text(self) -> str | None:
        """``schedule_text`` of this spec's JSON form (the store writes it beside the spec).

        The plan compares it with the stored column for every task on every apply, so it
        costs a lookup: cached on the spec (frozen, so it cannot go stale; pydantic
        leaves it out of dumps and equality) and, across specs, per distinct schedule.
        """
        return _schedule_text_of(self.type, self.crontab, self.interval, self.at)


SCHEDULE_FIELDS = ("type", "crontab", "interval", "at", "timezone", "enabled")
"""Fields whose change restarts the task's schedule (DESIGN §4)."""


# --- the schedule in one line ----------------------------------------------------------

_CRON_ORDER = tuple(name for name, _, _ in CRON_FIELDS)
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
    if spec.get("type") == "async":
        return "once, when applied"
    return None


class _ScheduleFields(_Model):
    """The fields ``schedule_text`` reads, typed as in TaskSpec so they dump to the same JSON."""

    type: TaskType
    crontab: Crontab | None
    interval: Interval | None
    at: dt.datetime | None


@functools.lru_cache(maxsize=4096)
def _schedule_text_of(
    type: TaskType, crontab: Crontab | None, interval: Interval | None, at: dt.datetime | None
) -> str | None:
    """``schedule_text`` of the JSON form of a spec's schedule fields.

    Tasks share a few schedules, so most specs find theirs here. The key's parts are
    frozen models and an ``at`` the spec has already turned into UTC (datetimes at
    different offsets compare equal, so another zone could share the key).
    """
    fields = _ScheduleFields.model_construct(type=type, crontab=crontab, interval=interval, at=at)
    return schedule_text(fields.model_dump(mode="json"))
