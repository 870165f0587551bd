"""The task model: one validated, normalised task definition (docs/task-files.md).

Pydantic models only; no file, database or Celery access. The loader builds these
from YAML; the plan, the store and the scheduler receive them already trusted.
Equal meanings compare equal: crontab strings and mappings, interval parts and
defaults are normalised on the way in.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from reconciler.core.alerts import Alerts
from reconciler.core.calendars import CalendarEntry, check_calendar_refs
from reconciler.core.cronsyntax import split_cron_expression
from reconciler.core.retention import History
from reconciler.core.schedulefields import Crontab, Interval, at_in_utc, schedule_text_of
from reconciler.core.secretref import reference_problems
from reconciler.core.timing import Spread, Timing, Window, timing_of, window_end, window_start
from reconciler.core.values import (
    FieldError,
    FileModel,
    check_json,
    check_key,
    check_text,
    describe_value,
)
from reconciler.core.zones import iana_zones, zone, zone_hint
from reconciler.errors import StoredSpecUnreadable
from reconciler.vocabulary import TaskType

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

# The schema lists the type's values inline, as the plain string enum editors complete.
_TYPE_SCHEMA = {"enum": [kind.value for kind in TaskType], "title": "Type", "type": "string"}

JSONValue = Any
"""A plain JSON value: null, bool, number, string, list or string-keyed mapping."""


# --- options ---------------------------------------------------------------------------


Seconds = Annotated[StrictInt, Field(gt=0, le=MAX_SECONDS)]


class Options(FileModel):
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


def _is_none(value: Any) -> bool:
    return value is None


class TaskSpec(FileModel):
    """One task definition, normalised."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""
    owner: Annotated[str, Field(min_length=1, max_length=MAX_OWNER)]
    type: Annotated[TaskType, WithJsonSchema(_TYPE_SCHEMA)]
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
    # Left out of the stored spec while unset, so a task that sets none keeps the text it
    # was stored with before the field existed (no update planned for every task).
    alerts: Alerts | None = Field(default=None, exclude_if=_is_none)
    # Periodic only (docs/task-files.md, "Spread, windows and calendars"); left out while
    # unset, like ``alerts``.
    spread: Spread | None = Field(default=None, exclude_if=_is_none)
    active: Window | None = Field(default=None, exclude_if=_is_none)
    skip_on: Annotated[list[str], AfterValidator(check_calendar_refs)] | None = Field(
        default=None, exclude_if=_is_none
    )
    only_on: Annotated[list[str], AfterValidator(check_calendar_refs)] | None = Field(
        default=None, exclude_if=_is_none
    )
    # The entries of the calendars named by skip_on / only_on, filled in by the loader
    # (never written in a task file), so beat needs nothing but the stored spec.
    calendars: SkipJsonSchema[dict[str, list[CalendarEntry]] | None] = Field(
        default=None, exclude_if=_is_none
    )
    history: History | None = Field(default=None, exclude_if=_is_none)
    # Names the task had before (docs/task-files.md, "Renames"): read by the plan, never
    # stored, so adding or dropping one changes no row.
    previous_names: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, exclude=True
    )
    # When the scheduler it was imported from last ran it (docs/import.md, "Cutting over"):
    # apply starts the schedule from it when it creates the task; never stored.
    last_run: dt.datetime | None = Field(default=None, exclude=True)

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
            check_key(key, ())
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

    @field_validator("previous_names")
    @classmethod
    def _distinct_previous(cls, value: list[str] | None) -> list[str] | None:
        for i, name in enumerate(value or ()):
            if name in (value or ())[:i]:
                raise FieldError(f"{name!r} is listed twice", loc=(i,), hint="list it once")
        return value

    @field_validator("crontab", mode="before")
    @classmethod
    def _crontab_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_cron_expression(value)
        return value

    @field_validator("at", "last_run", mode="before")
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
        check_json(value, ())
        return value

    @field_validator("kwargs")
    @classmethod
    def _kwargs_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json(value, ())
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
            raise FieldError(f"unknown time zone {value!r}", hint=zone_hint(value))
        try:
            zone(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise FieldError(f"unknown time zone {value!r}", hint=zone_hint(value)) from exc
        return value

    @model_validator(mode="after")
    def _schedule_fits_type(self) -> TaskSpec:
        given = [f for f in ("crontab", "interval", "at") if getattr(self, f) is not None]
        allowed = {
            TaskType.ASYNC: set(),
            TaskType.SCHEDULED: {"at"},
            TaskType.PERIODIC: {"crontab", "interval"},
        }[self.type]
        fits = {
            TaskType.ASYNC: "no schedule field",
            TaskType.SCHEDULED: "'at'",
            TaskType.PERIODIC: "'crontab' or 'interval'",
        }[self.type]
        for field in given:
            if field not in allowed:
                raise FieldError(
                    f"does not fit type {self.type.value!r}, which takes {fits}",
                    loc=(field,),
                    hint=f"remove {field!r} or change the type",
                )
        if self.type == TaskType.SCHEDULED and self.at is None:
            raise FieldError(
                "'scheduled' needs 'at'",
                loc=("type",),
                hint="add e.g. at: 2025-12-02T15:00:00Z",
            )
        if self.type == TaskType.PERIODIC and not given:
            raise FieldError(
                "'periodic' needs 'crontab' or 'interval'",
                loc=("type",),
                hint="add e.g. crontab: '0 9 * * 1' or interval: {minutes: 5}",
            )
        if self.type == TaskType.PERIODIC and len(given) > 1:
            raise FieldError(
                "'periodic' takes one of 'crontab' or 'interval', not both",
                loc=(given[1],),
                hint=f"remove {given[1]!r} or {given[0]!r}",
            )
        if self.at is not None:
            object.__setattr__(self, "at", at_in_utc(self.at, self.timezone))
        if self.last_run is not None:
            object.__setattr__(self, "last_run", at_in_utc(self.last_run, self.timezone))
        self._timing_fields()
        return self

    @model_validator(mode="after")
    def _previous_not_own(self) -> TaskSpec:
        previous = self.previous_names or []
        if self.name in previous:
            raise FieldError(
                f"{self.name!r} is the task's own name",
                loc=("previous_names", previous.index(self.name)),
                hint="list only the names the task had before",
            )
        return self

    def _timing_fields(self) -> None:
        """``spread``, ``active``, ``skip_on``, ``only_on`` and ``last_run`` are for periodic
        tasks; a window ends after it starts; a stored spec carries every calendar it names."""
        for name in ("spread", "active", "skip_on", "only_on", "last_run"):
            if getattr(self, name) is not None and self.type != TaskType.PERIODIC:
                raise FieldError(
                    f"is for periodic tasks, not {self.type.value!r}",
                    loc=(name,),
                    hint=f"remove {name!r}",
                )
        active = self.active
        if active is not None and active.from_ is not None and active.until is not None:
            zone = self.tz
            if window_end(active.until, zone) <= window_start(active.from_, zone):
                raise FieldError(
                    "ends before it starts", loc=("active", "until"), hint="check from and until"
                )
        if self.calendars is not None:
            named = {*(self.skip_on or ()), *(self.only_on or ())}
            missing = sorted(named - set(self.calendars))
            if missing or set(self.calendars) - named:
                raise FieldError(
                    "does not match skip_on and only_on",
                    loc=("calendars",),
                    hint="apply the task files again",
                )

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

    def updated(self, **fields: Any) -> TaskSpec:
        """A copy with ``fields`` replaced (values already valid), without the cached
        values derived from the old ones."""
        copy = self.model_copy(update=fields)
        for cached in ("timing", "schedule_text"):
            copy.__dict__.pop(cached, None)
        return copy

    @functools.cached_property
    def timing(self) -> Timing:
        """Spread, window and calendars, computed once per spec (``core.timing``)."""
        return timing_of(
            self.name,
            self.tz,
            self.spread,
            self.active,
            self.skip_on or (),
            self.only_on or (),
            self.calendars,
        )

    @functools.cached_property
    def schedule_text(self) -> str | None:
        """``schedule_text`` of this spec's JSON form (the store writes it beside the spec).

        The plan compares it with the stored column for every task on every apply, so it
        costs a lookup: cached on the spec (frozen, so it cannot go stale; pydantic
        leaves it out of dumps and equality) and, across specs, per distinct schedule.
        """
        return schedule_text_of(self.type, self.crontab, self.interval, self.at)


SCHEDULE_FIELDS = ("type", "crontab", "interval", "at", "timezone", "enabled", "spread", "active")
"""Fields whose change restarts the task's schedule (docs/beat.md, "Schedules")."""


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
