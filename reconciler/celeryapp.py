"""Finding the user's Celery app (``module:attr``) and the task names it registers.

Used by ``validate --app``, ``reconcile tasks``, beat, ``up`` and ``doctor``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from typing import Any

from celery import Celery

from reconciler.errors import ConfigError


def load_app(path: str) -> Celery:
    """Import ``module:attr`` (``module`` alone means its ``app`` attribute)."""
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {path}: cannot import {module_name!r}: {exc}") from exc
    app: Any = module
    for part in attr.split("."):
        app = getattr(app, part, None)
        if app is None:
            raise ConfigError(f"--app {path}: {module_name!r} has no attribute {attr!r}")
    if not isinstance(app, Celery):
        raise ConfigError(f"--app {path}: {attr!r} is a {type(app).__name__}, not a Celery app")
    return app


def registered_task_names(app: Celery) -> list[str]:
    """The app's own task names, without Celery's built-in ``celery.*`` tasks."""
    app.loader.import_default_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))


CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def beat_schedule_entries(app: Celery) -> list[dict[str, Any]]:
    """``app.conf.beat_schedule`` as plain entries for ``reconcile import --from beat-schedule``
    (docs/import.md): the schedule objects become ``{"kind": ...}`` mappings, nothing else of
    Celery's is kept."""
    from celery.schedules import crontab, schedule, solar

    entries: list[dict[str, Any]] = []
    for name, raw in (app.conf.beat_schedule or {}).items():
        definition = dict(raw) if isinstance(raw, dict) else {"task": raw}
        every = definition.pop("schedule", None)
        entry: dict[str, Any] = {
            "where": f"beat_schedule[{name!r}]",
            "name": str(name),
            "task": definition.pop("task", None),
            "args": list(definition.pop("args", None) or ()),
            "kwargs": dict(definition.pop("kwargs", None) or {}),
            "options": dict(definition.pop("options", None) or {}),
            "enabled": True,
            "unsupported": {},
        }
        if definition.pop("relative", False):
            entry["unsupported"]["relative"] = True
        entry["unsupported"].update(definition)
        if isinstance(every, solar):
            entry["schedule"] = {"kind": "solar", "event": every.event}
        elif isinstance(every, crontab):
            fields = {key: _orig_field(getattr(every, f"_orig_{key}")) for key in CRONTAB_FIELDS}
            zone = getattr(every.tz, "key", None) or str(every.tz)
            entry["schedule"] = {"kind": "crontab", **fields, "timezone": zone}
        elif isinstance(every, schedule):
            entry["schedule"] = {"kind": "interval", "seconds": every.run_every.total_seconds()}
            if every.relative:
                entry["unsupported"]["relative"] = True
        elif isinstance(every, dt.timedelta):
            entry["schedule"] = {"kind": "interval", "seconds": every.total_seconds()}
        elif isinstance(every, (int, float)) and not isinstance(every, bool):
            entry["schedule"] = {"kind": "interval", "seconds": float(every)}
        else:
            entry["schedule"] = {"kind": type(every).__name__}
        entries.append(entry)
    return entries


def _orig_field(value: Any) -> str:
    """A crontab field as Celery was given it: text as is, numbers and sets as a list."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    return ",".join(str(item) for item in sorted(value))
