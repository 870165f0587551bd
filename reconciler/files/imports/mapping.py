"""One old web API payload as a task document: its fields checked, its type and schedule
mapped, every problem listed with the payload field it names (docs/import.md)."""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.cronsyntax import CRON_FIELDS, check_cron_field
from reconciler.files.imports.source import json_type
from reconciler.vocabulary import TaskType

PAYLOAD_FIELDS = (
    "name",
    "description",
    "task_type",
    "execution_type",
    "celery_task_name",
    "task_args",
    "task_kwargs",
    "scheduled_time",
    "crontab_minute",
    "crontab_hour",
    "crontab_day_of_month",
    "crontab_month_of_year",
    "crontab_day_of_week",
    "interval_days",
    "interval_hours",
    "interval_minutes",
    "interval_seconds",
    "enabled",
    "owner",
)
"""What a payload may hold: the old API's task fields, plus ``owner``."""

IGNORED_FIELDS = frozenset(
    {
        "id",
        "owner_id",
        "created_at",
        "updated_at",
        "last_run_at",
        "next_run_at",
        "total_run_count",
        "last_status",
        "status",
        "celery_task_id",
    }
)
"""Read-only fields of the old API's responses: exported lists carry them; they are dropped."""

TASK_TYPES = (*TaskType, "once")
"""The old API's task types: ours, and ``once``, which becomes async or scheduled."""
EXECUTION_TYPES = ("immediate", "scheduled")
INTERVAL_PARTS = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
MAX_INTERVAL_SECONDS = 365 * 86400 + 23 * 3600 + 59 * 60 + 59

SPEC_TO_PAYLOAD = {
    "name": "name",
    "description": "description",
    "owner": "owner",
    "task": "celery_task_name",
    "args": "task_args",
    "kwargs": "task_kwargs",
    "at": "scheduled_time",
    "enabled": "enabled",
}
"""The payload field a task file field comes from, to name it in a message."""


@dataclass
class Payload:
    """One payload being read: its index, and the problems found so far."""

    index: int
    data: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    label: str = ""
    """How messages name it: ``payload[2]`` unless a source says otherwise."""

    def where(self, name: str | None = None) -> str:
        return (self.label or f"payload[{self.index}]") + (f".{name}" if name else "")

    def problem(self, name: str | None, message: str) -> None:
        self.problems.append(f"{self.where(name)}: {message}")

    def get(self, name: str) -> Any:
        return self.data.get(name)


def payload_to_document(payload: Payload, owner: str | None) -> dict[str, Any] | None:
    """The task document (in file field order) for one payload, or None after problems."""
    data = payload.data
    for key in data:
        if key in IGNORED_FIELDS:
            continue
        if key not in PAYLOAD_FIELDS:
            payload.problem(key, "unknown field; " + _closest(key))
    original = _text_field(payload, "name", required=True)
    description = _text_field(payload, "description", required=False) or ""
    task = _text_field(payload, "celery_task_name", required=True)
    task_owner = _text_field(payload, "owner", required=False) or owner or ""
    args = _json_field(payload, "task_args", list)
    kwargs = _json_field(payload, "task_kwargs", dict)
    enabled = data.get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        payload.problem("enabled", f"must be true or false, got {json.dumps(enabled)}")
    task_type = _task_type(payload)
    schedule = _schedule(payload, task_type) if task_type else None
    if task_type:
        _note_unused_schedule(payload, task_type)
    if payload.problems or original is None or task is None or task_type is None:
        return None
    document: dict[str, Any] = {"name": original}
    if description:
        document["description"] = description
    document["owner"] = task_owner
    document["type"] = task_type
    document["task"] = task
    if args:
        document["args"] = args
    if kwargs:
        document["kwargs"] = kwargs
    document["enabled"] = enabled
    if schedule is not None:
        document.update(schedule)
    return document


def _note_unused_schedule(payload: Payload, task_type: str) -> None:
    """The old form sent every schedule field; say which meaningful ones are dropped."""
    unused: list[str] = []
    if task_type != TaskType.SCHEDULED and payload.get("scheduled_time"):
        unused.append("scheduled_time")
    if task_type != TaskType.PERIODIC:
        unused += [
            f"crontab_{name}"
            for name, _, _ in CRON_FIELDS
            if payload.get(f"crontab_{name}") not in (None, "", "*")
        ]
        unused += [
            f"interval_{part}"
            for part, _ in INTERVAL_PARTS
            if payload.get(f"interval_{part}") not in (None, "", 0, "0")
        ]
    if unused:
        payload.notes.append(f"{', '.join(unused)} ignored: type {task_type!r} does not use them")


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, PAYLOAD_FIELDS, n=1)
    return f"did you mean {match[0]!r}?" if match else "remove it"


def _text_field(payload: Payload, name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            payload.problem(name, "is required")
        return None
    if not isinstance(value, str):
        payload.problem(name, f"must be a string, got {json_type(value)}")
        return None
    return value.strip()


def _json_field(payload: Payload, name: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """``task_args`` / ``task_kwargs``: a JSON string (as the old API sent) or the value itself."""
    expected = "array" if kind is list else "object"
    value = payload.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return kind()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            payload.problem(name, f"not valid JSON: {exc.msg} at column {exc.colno}")
            return kind()
    if not isinstance(value, kind):
        payload.problem(name, f"must be a JSON {expected}, got {json_type(value)}")
        return kind()
    return value


def _task_type(payload: Payload) -> str | None:
    """Map the old ``task_type`` (and ``execution_type`` for ``once``) to a type."""
    task_type = payload.get("task_type")
    if task_type not in TASK_TYPES:
        given = "is required" if task_type is None else f"is {json.dumps(task_type)}"
        payload.problem("task_type", f"{given}; use one of {', '.join(TASK_TYPES)}")
        return None
    execution = payload.get("execution_type")
    if execution is not None and execution not in EXECUTION_TYPES:
        payload.problem(
            "execution_type",
            f"is {json.dumps(execution)}; use one of {', '.join(EXECUTION_TYPES)}",
        )
        return None
    if task_type != "once":
        return str(task_type)
    if execution is None:
        execution = "scheduled" if payload.get("scheduled_time") else "immediate"
    # A plain str: the YAML dumper and the notes' repr take no enum member.
    return str(TaskType.SCHEDULED if execution == "scheduled" else TaskType.ASYNC)


def _schedule(payload: Payload, task_type: str) -> dict[str, Any] | None:
    if task_type == TaskType.SCHEDULED:
        at = _scheduled_time(payload)
        return None if at is None else {"at": at}
    if task_type == TaskType.PERIODIC:
        return _periodic(payload)
    return {}


def _scheduled_time(payload: Payload) -> dt.datetime | None:
    """``scheduled_time`` as aware UTC; without an offset it is UTC, as the old system kept it."""
    value = payload.get("scheduled_time")
    if value is None or value == "":
        payload.problem(
            "scheduled_time",
            "is required when the task runs at a set time, e.g. 2025-12-02T15:00:00",
        )
        return None
    if not isinstance(value, str):
        payload.problem("scheduled_time", f"must be an ISO 8601 string, got {json_type(value)}")
        return None
    try:
        at = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        payload.problem(
            "scheduled_time", f"{value!r} is not an ISO 8601 time, e.g. 2025-12-02T15:00:00"
        )
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC)


def _periodic(payload: Payload) -> dict[str, Any] | None:
    """A crontab (from the ``crontab_*`` fields) or an interval (from ``interval_*``)."""
    cron: dict[str, str] = {}
    for cron_field, _, _ in CRON_FIELDS:
        key = f"crontab_{cron_field}"
        value = payload.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            payload.problem(
                key, f"must be a cron field string such as '*/5', got {json_type(value)}"
            )
            continue
        try:
            cron[cron_field] = check_cron_field(cron_field, str(value))
        except ValueError as exc:
            hint = getattr(exc, "hint", None)
            payload.problem(key, str(exc) + (f" ({hint})" if hint else ""))
    seconds = _interval_seconds(payload)
    if payload.problems:
        return None
    restricting = any(value != "*" for value in cron.values())
    if seconds and restricting:
        payload.problem(
            None,
            "has both crontab_* and interval_* values; a periodic task takes one schedule: "
            "clear the one that is not meant",
        )
        return None
    if seconds:
        return {"interval": _interval(seconds)}
    if cron:
        parts = [cron.get(name, "*") for name, _, _ in CRON_FIELDS]
        return {"crontab": " ".join(parts)}
    payload.problem(
        None,
        "task_type 'periodic' needs crontab_* fields (e.g. crontab_minute: '*/5') or "
        "interval_* fields (e.g. interval_minutes: 5)",
    )
    return None


def _interval_seconds(payload: Payload) -> int:
    total = 0
    for part, seconds in INTERVAL_PARTS:
        key = f"interval_{part}"
        value = payload.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            payload.problem(key, f"must be a whole number, got {json.dumps(value)}")
            continue
        if value < 0:
            payload.problem(key, f"must not be negative, got {value}")
            continue
        total += value * seconds
    if total > MAX_INTERVAL_SECONDS:
        payload.problem(None, "the interval_* fields add up to more than 365 days")
    return total


def interval_parts(total: int) -> dict[str, int] | None:
    """``total`` seconds as interval parts, or None past the longest interval."""
    return _interval(total) if 0 < total <= MAX_INTERVAL_SECONDS else None


def _interval(total: int) -> dict[str, int]:
    """Carry over-full parts (90 minutes -> 1 hour 30 minutes); only parts above 0."""
    interval: dict[str, int] = {}
    for part, seconds in INTERVAL_PARTS:
        count, total = divmod(total, seconds)
        if count:
            interval[part] = count
    return interval
