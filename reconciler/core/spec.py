"""The task model: one validated, normalised task definition (docs/task-files.md).

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
from importlib import resources
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from reconciler.core.secretref import reference_problems
from reconciler.errors import StoredSpecUnreadable

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
RESERVED_NAMES = frozenset({"registered", "executions"})

# Limits (docs/task-files.md, "Limits"): what the database columns, the broker and the
# HTTP endpoint accept, so that a file ``validate`` passes is one that applies and is served.
MAX_OWNER = 200
MAX_TASK = 300
MAX_DESCRIPTION = 4000
MAX_QUEUE_BYTES = 255
MAX_LABEL_KEY = 100
MAX_LABEL_VALUE = 200
MAX_SECONDS = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# ``at`` must be a real local time in every zone (offsets stay well within a day).
AT_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
AT_MAX = dt.datetime(9999, 12, 30, 23, 59, 59, tzinfo=dt.UTC)

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


Seconds = Annotated[StrictInt, Field(gt=0, le=MAX_SECONDS)]


class Options(_Model):
    """Passed to ``apply_async``."""

    queue: str | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=9)] | None = None
    expires: Seconds | None = None
    time_limit: Seconds | None = None
    soft_time_limit: Seconds | None = None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        check_text(value, multiline=False)
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_QUEUE_BYTES:
            raise FieldError(
                f"is {size} bytes long, over the limit of {MAX_QUEUE_BYTES} (AMQP queue names)",
                hint="use a shorter queue name",
            )
        return value

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


def describe_value(value: Any, *, hidden: bool = False) -> str:
    """How a YAML user would name this value: ``an integer (5)``, ``a list``; ``hidden``
    (a secret-looking key's value) names its kind only."""
    name = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
    if isinstance(value, (list, dict)) or value is None or hidden:
        return name
    if isinstance(value, int) and value.bit_length() > 64:
        return f"{name} ({value.bit_length()} bits)"
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{name} ({text})"


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(value: str, *, multiline: bool, loc: tuple[str | int, ...] = ()) -> None:
    """Refuse characters no column, terminal or JSON reader takes as text: NUL and other
    control characters (tab and line breaks too, unless ``multiline``), lone surrogates."""
    found = (_CONTROL_TEXT if multiline else _CONTROL_ONE_LINE).search(value)
    if found is not None:
        code = ord(found.group())
        name = "NUL" if code == 0 else f"U+{code:04X}"
        allowed = " (tabs and line breaks are allowed)" if multiline else ""
        raise FieldError(
            f"contains the control character {name} at position {found.start() + 1}",
            loc=loc,
            hint=f"remove it; control characters are not allowed here{allowed}",
        )
    found = _SURROGATE.search(value)
    if found is not None:
        raise FieldError(
            f"contains a lone surrogate U+{ord(found.group()):04X} at position "
            f"{found.start() + 1}, which is not text",
            loc=loc,
            hint="remove it",
        )


INT64_HINT = "pass it as a string, e.g. '12345678901234567890123'"


def beyond_int64(value: int) -> str | None:
    """Why ``value`` is refused, when it lies outside the signed 64-bit range."""
    if INT64_MIN <= value <= INT64_MAX:
        return None
    bits = value.bit_length()
    # Over ~4,300 digits Python refuses to write an int out in decimal: count bits then.
    size = f"{len(str(abs(value)))} digits" if bits < 4_000 else f"{bits} bits"
    return f"an integer of {size} is beyond the 64-bit range ({INT64_MIN} to {INT64_MAX})"


def _check_key(key: str, loc: tuple[str | int, ...]) -> None:
    """A mapping key is checked as one-line text, reported at its mapping (a location
    holding the bad key would print it)."""
    try:
        check_text(key, multiline=False)
    except FieldError as exc:
        raise FieldError(f"key {key!r} {exc.message}", loc=loc, hint=exc.hint) from exc


def _check_json(value: Any, loc: tuple[str | int, ...]) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, multiline=True, loc=loc)
        return
    if isinstance(value, int):
        beyond = beyond_int64(value)
        if beyond is not None:
            raise FieldError(beyond, loc=loc, hint=INT64_HINT)
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
            _check_key(key, loc)
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


@functools.cache
def iana_zones() -> frozenset[str]:
    """The zone names of the IANA database (the ``tzdata`` package's list), the same on
    every host; ``available_timezones`` would add the host's files such as ``localtime``."""
    try:
        text = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):  # pragma: no cover - tzdata is a dependency
        return frozenset(available_timezones())
    return frozenset(text.split())


def _zone_hint(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(iana_zones()), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "use an IANA name such as 'Europe/Berlin' or 'UTC'"


class TaskSpec(_Model):
    """One task definition, normalised."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""
    owner: Annotated[str, Field(min_length=1, max_length=MAX_OWNER)]
    type: TaskType
    task: Annotated[str, Field(min_length=1, max_length=MAX_TASK, pattern=r"^\S+$")]
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

    @field_validator("owner", "task")
    @classmethod
    def _one_line(cls, value: str) -> str:
        check_text(value, multiline=False)
        return value

    @field_validator("description")
    @classmethod
    def _text(cls, value: str) -> str:
        check_text(value, multiline=True)
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            _check_key(key, ())
            if len(key) > MAX_LABEL_KEY:
                raise FieldError(
                    f"key {key[:20]!r}... is {len(key)} characters long, over the limit of "
                    f"{MAX_LABEL_KEY}"
                )
            check_text(text, multiline=False, loc=(key,))
            if len(text) > MAX_LABEL_VALUE:
                raise FieldError(
                    f"is {len(text)} characters long, over the limit of {MAX_LABEL_VALUE}",
                    loc=(key,),
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

    @field_validator("args", "kwargs")
    @classmethod
    def _secret_references(cls, value: Any) -> Any:
        # {secret_env: NAME}: resolved only where an execution is published (docs/task-files.md)
        for loc, message, hint in reference_problems(value):
            raise FieldError(message, loc=loc, hint=hint)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in iana_zones():
            # Host files such as 'localtime' or 'posixrules' would mean what each host says.
            raise FieldError(f"unknown time zone {value!r}", hint=_zone_hint(value))
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
            object.__setattr__(self, "at", _at_in_utc(self.at, self.timezone))
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


def _at_in_utc(at: dt.datetime, timezone: str) -> dt.datetime:
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


SCHEDULE_FIELDS = ("type", "crontab", "interval", "at", "timezone", "enabled")
"""Fields whose change restarts the task's schedule (docs/beat.md, "Schedules")."""


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


def stored_spec(name: str, data: Mapping[str, Any]) -> TaskSpec:
    """A task's spec as apply stored it, read back under this version's rules.

    The one way stored specs become ``TaskSpec`` again (beat, ``status``, ``trigger``):
    one that no longer passes raises ``StoredSpecUnreadable`` naming the task and its
    first problem, never a validation traceback.
    """
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first["loc"]) or "definition"
        raise StoredSpecUnreadable(
            f"task {name!r}: its stored definition does not pass this version's checks "
            f"({where}: {first['msg']}); run `reconcile` to apply the task files again"
        ) from exc
