"""One entry of another scheduler (Celery's ``beat_schedule``, django-celery-beat, RedBeat)
as a task document: its schedule mapped, every field a task file cannot hold reported by
name (docs/import.md)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from reconciler.core.cronmatch import compiled
from reconciler.core.cronsyntax import CRON_FIELDS, check_cron_field
from reconciler.core.redact import redact, redact_field
from reconciler.core.schedule import next_fire_times
from reconciler.core.schedulefields import Crontab
from reconciler.core.spec import TaskSpec
from reconciler.files.imports.mapping import Payload, interval_parts
from reconciler.files.imports.source import json_type
from reconciler.vocabulary import TaskType

OPTIONS = ("queue", "priority", "expires", "time_limit", "soft_time_limit")
"""The ``apply_async`` options a task file holds; any other option is reported."""

SOLAR_REASON = (
    "a solar schedule (sunrise, sunset... at a place) has no equivalent in task files; "
    "write a crontab near the times it fires and import the rest"
)


def entry_to_document(
    payload: Payload, owner: str | None, *, default_zone: str, drop_unsupported: bool
) -> dict[str, Any] | None:
    """The task document for one entry (``name`` still the original), or None after problems."""
    entry = payload.data
    if entry.get("problem"):
        payload.problem(None, str(entry["problem"]))
        return None
    name = entry.get("name")
    task = entry.get("task")
    if not isinstance(task, str) or not task.strip():
        payload.problem("task", "is required" if not task else f"must be a string, got {task!r}")
    options = _options(payload, entry.get("options") or {})
    unsupported = dict(entry.get("unsupported") or {})
    unsupported.update(options.pop("_unsupported"))
    enabled = bool(entry.get("enabled", True))
    expires_at = entry.get("expires_at")
    now = dt.datetime.now(dt.UTC)
    if isinstance(expires_at, dt.datetime):
        if expires_at <= now:
            if enabled:
                payload.notes.append(
                    f"expires: it expired at {expires_at.isoformat()}; imported disabled"
                )
            enabled = False
        else:
            unsupported["expires"] = expires_at.isoformat()
    schedule = _schedule(payload, entry, default_zone)
    for field, value in unsupported.items():
        message = (
            f"{_shown(field, value)} is not supported by task files (docs/import.md lists what is)"
        )
        if drop_unsupported:
            payload.notes.append(f"{field}: {message}; dropped (--drop-unsupported)")
        else:
            payload.problem(field, message + "; remove it at the source or pass --drop-unsupported")
    if payload.problems or schedule is None or not isinstance(task, str):
        return None
    if schedule.pop("_ran", False):
        enabled = False
    document: dict[str, Any] = {"name": str(name)}
    description = str(entry.get("description") or "").strip()
    if description:
        document["description"] = description
    document["owner"] = owner or ""
    document["type"] = schedule.pop("type")
    document["task"] = task.strip()
    args, kwargs = entry.get("args") or [], entry.get("kwargs") or {}
    if not isinstance(args, (list, tuple)):
        payload.problem("args", f"must be a list, got {json_type(args)}")
    if not isinstance(kwargs, dict):
        payload.problem("kwargs", f"must be a mapping, got {json_type(kwargs)}")
    if payload.problems:
        return None
    if args:
        document["args"] = list(args)
    if kwargs:
        document["kwargs"] = dict(kwargs)
    document["enabled"] = enabled
    document.update(schedule)
    if options:
        document["options"] = options
    return document


def _shown(field: str, value: Any) -> str:
    """A value in a message, redacted by the one policy (docs/security.md) and cut short."""
    value = redact(redact_field(field, value))
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _options(payload: Payload, options: Any) -> dict[str, Any]:
    kept: dict[str, Any] = {"_unsupported": {}}
    if not isinstance(options, dict):
        payload.problem("options", f"must be a mapping, got {json_type(options)}")
        return kept
    for key, value in options.items():
        if value is None or value == "" or value == {}:
            continue
        if key not in OPTIONS:
            kept["_unsupported"][f"options.{key}"] = value
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if key == "expires" and not isinstance(value, int):
            kept["_unsupported"]["options.expires"] = value
            continue
        kept[key] = value
    return kept


def _schedule(payload: Payload, entry: Any, default_zone: str) -> dict[str, Any] | None:
    schedule = entry.get("schedule")
    if not isinstance(schedule, dict):
        payload.problem("schedule", "has no schedule (crontab, interval or clocked)")
        return None
    kind = schedule.get("kind")
    one_off = bool(entry.get("one_off"))
    if kind == "solar":
        payload.problem("schedule", SOLAR_REASON)
        return None
    if kind == "clocked":
        at = schedule.get("at")
        if not isinstance(at, dt.datetime):
            payload.problem("clocked", "has no clocked_time")
            return None
        return {"type": str(TaskType.SCHEDULED), "at": at}
    if kind == "crontab":
        periodic = _crontab(payload, schedule, default_zone)
    elif kind == "interval":
        periodic = _interval(payload, schedule)
    else:
        payload.problem(
            "schedule", f"a {kind} schedule is not supported; use a crontab or an interval"
        )
        return None
    if periodic is None:
        return None
    if one_off:
        return _one_off(payload, entry, periodic)
    return {"type": str(TaskType.PERIODIC), **periodic}


def _crontab(payload: Payload, schedule: Any, default_zone: str) -> dict[str, Any] | None:
    fields: dict[str, str] = {}
    for name, _, _ in CRON_FIELDS:
        value = str(schedule.get(name, "*")).strip() or "*"
        try:
            fields[name] = check_cron_field(name, value)
        except ValueError as exc:
            hint = getattr(exc, "hint", None)
            payload.problem(f"crontab.{name}", str(exc) + (f" ({hint})" if hint else ""))
    if payload.problems:
        return None
    crontab = Crontab.model_validate(fields)
    if compiled(crontab).day_or:
        payload.problem(
            "crontab",
            f"day_of_month {fields['day_of_month']!r} and day_of_week "
            f"{fields['day_of_week']!r} are both set: Celery fires on days matching both, a "
            f"task file's crontab on days matching either; split it into two tasks or keep "
            f"one of the two fields",
        )
        return None
    zone = schedule.get("timezone") or default_zone
    document: dict[str, Any] = {"crontab": crontab.expression}
    if zone != "UTC":
        document["timezone"] = str(zone)
    return document


def _interval(payload: Payload, schedule: Any) -> dict[str, Any] | None:
    seconds = schedule.get("seconds")
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        payload.problem("interval", f"must be above 0 seconds, got {seconds!r}")
        return None
    if not float(seconds).is_integer():
        payload.problem(
            "interval",
            f"{seconds} seconds is not a whole number of seconds; task files count whole seconds",
        )
        return None
    if schedule.get("relative"):
        payload.problem("relative", "relative intervals (rounded to the period) are not supported")
        return None
    parts = interval_parts(int(seconds))
    if parts is None:
        payload.problem("interval", f"{int(seconds)} seconds is more than 365 days")
        return None
    return {"interval": parts}


def _one_off(payload: Payload, entry: Any, periodic: dict[str, Any]) -> dict[str, Any] | None:
    """django-celery-beat's ``one_off`` on a crontab or interval fires once, at the schedule's
    next time, then disables itself: a ``scheduled`` task at that time."""
    probe = TaskSpec.model_validate(
        {"name": "probe", "owner": "probe", "type": "periodic", "task": "probe", **periodic}
    )
    now = dt.datetime.now(dt.UTC)
    times = next_fire_times(probe, now, 1)
    if not times:
        payload.problem("one_off", "its schedule never fires")
        return None
    payload.notes.append(
        f"one_off: it fires once, at the schedule's next time, {times[0].isoformat()}: "
        f"imported as a scheduled task"
    )
    ran = bool(entry.get("total_run_count")) or entry.get("last_run_at") is not None
    document: dict[str, Any] = {"type": str(TaskType.SCHEDULED), "at": times[0], "_ran": ran}
    if "timezone" in periodic:
        document["timezone"] = periodic["timezone"]
    return document
