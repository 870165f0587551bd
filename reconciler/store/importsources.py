"""Reading other schedulers' stores for ``reconcile import`` (docs/import.md):
django-celery-beat's tables through SQLAlchemy (no Django needed) and RedBeat's keys in
Redis. Each entry comes back as a plain mapping with a ``{"kind": ...}`` schedule; the
mapping to task files is ``reconciler.files.imports.entries``. For ``reconcile doctor``,
the signs that an old scheduler still runs after the cut-over (``*_activity``) and the
tasks imported here (``imported_rows``)."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Connection, MetaData, Table, func, select
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.orm import Session

from reconciler.core.redact import redact_url_credentials
from reconciler.errors import ReconcilerError
from reconciler.store import heartbeats
from reconciler.store.database import make_engine
from reconciler.store.tables import Task
from reconciler.vocabulary import REDBEAT_PREFIX

DJANGO_PREFIX = "django_celery_beat_"
PERIODIC_TABLE = DJANGO_PREFIX + "periodictask"

_DJANGO_USED = {
    "id",
    "name",
    "task",
    "args",
    "kwargs",
    "queue",
    "exchange",
    "routing_key",
    "headers",
    "priority",
    "expires",
    "expire_seconds",
    "one_off",
    "start_time",
    "enabled",
    "last_run_at",
    "total_run_count",
    "date_changed",
    "description",
    "crontab_id",
    "interval_id",
    "solar_id",
    "clocked_id",
}
"""PeriodicTask columns the reader knows; any other column with a value is reported."""

_PERIOD_SECONDS = {
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
    "microseconds": 1e-6,
}


def read_django_celery_beat(url: str) -> list[dict[str, Any]]:
    """Every ``PeriodicTask`` row, with its schedule row, as plain entries (by id)."""
    with _django_connection(url) as connection:
        metadata = MetaData()
        periodic = _periodic_table(connection, metadata)
        schedules = {
            kind: _rows(connection, metadata, kind)
            for kind in (
                "crontabschedule",
                "intervalschedule",
                "solarschedule",
                "clockedschedule",
            )
        }
        rows = [
            dict(row)
            for row in connection.execute(select(periodic).order_by(periodic.c.id)).mappings()
        ]
    return [_django_entry(row, schedules) for row in rows]


@contextmanager
def _django_connection(url: str) -> Iterator[Connection]:
    """A connection to django-celery-beat's database; its errors say which, redacted."""
    try:
        engine = make_engine(url, create=False)
    except (ArgumentError, ValueError) as exc:
        shown = redact_url_credentials(url)
        raise ReconcilerError(f"{shown!r} is not a database URL: {exc}") from exc
    try:
        with engine.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise ReconcilerError(
            f"{engine.url.render_as_string()}: cannot read django-celery-beat's tables: "
            f"{redact_url_credentials(str(exc).splitlines()[0])}"
        ) from exc
    finally:
        engine.dispose()


def _periodic_table(connection: Connection, metadata: MetaData) -> Table:
    try:
        return Table(PERIODIC_TABLE, metadata, autoload_with=connection)
    except NoSuchTableError as exc:
        raise ReconcilerError(
            f"{connection.engine.url.render_as_string()}: no table {PERIODIC_TABLE}; is this "
            f"the database of a Django project with django_celery_beat migrated?"
        ) from exc


def _rows(connection: Any, metadata: MetaData, kind: str) -> dict[int, dict[str, Any]]:
    try:
        table = Table(DJANGO_PREFIX + kind, metadata, autoload_with=connection)
    except NoSuchTableError:
        return {}
    return {row["id"]: dict(row) for row in connection.execute(select(table)).mappings()}


def _django_entry(
    row: dict[str, Any], schedules: dict[str, dict[int, dict[str, Any]]]
) -> dict[str, Any]:
    where = f"periodic_task[{row['id']}]"
    unsupported: dict[str, Any] = {}
    for column, value in row.items():
        if column not in _DJANGO_USED and value not in (None, "", 0, False):
            unsupported[column] = value
    for column in ("exchange", "routing_key"):
        if row.get(column):
            unsupported[column] = row[column]
    headers = _json_text(row.get("headers"), where, "headers", unsupported)
    if headers:
        unsupported["headers"] = headers
    start = _utc(row.get("start_time"))
    if start is not None and start > dt.datetime.now(dt.UTC):
        unsupported["start_time"] = start.isoformat()
    options: dict[str, Any] = {}
    if row.get("queue"):
        options["queue"] = row["queue"]
    if row.get("priority") is not None:
        options["priority"] = row["priority"]
    if row.get("expire_seconds"):
        options["expires"] = row["expire_seconds"]
    return {
        "where": where,
        "name": row["name"],
        "task": row["task"],
        "description": row.get("description") or "",
        "args": _json_text(row.get("args"), where, "args", unsupported, default=[]),
        "kwargs": _json_text(row.get("kwargs"), where, "kwargs", unsupported, default={}),
        "options": options,
        "enabled": bool(row.get("enabled")),
        "one_off": bool(row.get("one_off")),
        "expires_at": _utc(row.get("expires")),
        "last_run_at": _utc(row.get("last_run_at")),
        "total_run_count": row.get("total_run_count") or 0,
        "schedule": _django_schedule(row, schedules),
        "unsupported": unsupported,
    }


def _django_schedule(
    row: dict[str, Any], schedules: dict[str, dict[int, dict[str, Any]]]
) -> dict[str, Any] | None:
    if row.get("crontab_id") is not None:
        cron = schedules["crontabschedule"].get(row["crontab_id"], {})
        return {
            "kind": "crontab",
            "minute": cron.get("minute", "*"),
            "hour": cron.get("hour", "*"),
            "day_of_month": cron.get("day_of_month", "*"),
            "month_of_year": cron.get("month_of_year", "*"),
            "day_of_week": cron.get("day_of_week", "*"),
            "timezone": str(cron.get("timezone") or "UTC"),
        }
    if row.get("interval_id") is not None:
        interval = schedules["intervalschedule"].get(row["interval_id"], {})
        size = _PERIOD_SECONDS.get(str(interval.get("period")), 0.0)
        return {"kind": "interval", "seconds": (interval.get("every") or 0) * size}
    if row.get("clocked_id") is not None:
        clocked = schedules["clockedschedule"].get(row["clocked_id"], {})
        return {"kind": "clocked", "at": _utc(clocked.get("clocked_time"))}
    if row.get("solar_id") is not None:
        solar = schedules["solarschedule"].get(row["solar_id"], {})
        return {"kind": "solar", "event": solar.get("event")}
    return None


def _json_text(
    text: Any, where: str, column: str, unsupported: dict[str, Any], default: Any = None
) -> Any:
    """django-celery-beat keeps args, kwargs and headers as JSON text."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return default
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        unsupported[column] = f"not valid JSON ({exc.msg} at column {exc.colno})"
        return default


def _utc(value: Any) -> dt.datetime | None:
    """A stored time as aware UTC: Django with USE_TZ keeps UTC, naive on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# --- RedBeat --------------------------------------------------------------------------------


_REDBEAT_OWN_KEYS = (":schedule", ":statics", ":lock")


def read_redbeat(url: str, key_prefix: str = REDBEAT_PREFIX) -> list[dict[str, Any]]:
    """Every RedBeat entry under ``key_prefix`` (its definition and meta), by key."""
    client = _redis_client(url)
    own = {key_prefix + suffix for suffix in _REDBEAT_OWN_KEYS}
    try:
        keys = sorted(
            key.decode()
            for key in client.scan_iter(match=_glob_escape(key_prefix) + "*", count=1000)
            if key.decode() not in own
        )
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
                pipe.hmget(key, ["definition", "meta"])
            replies = pipe.execute()
    except redis.RedisError as exc:
        reason = redact_url_credentials(str(exc))
        raise ReconcilerError(f"cannot read RedBeat's keys from Redis: {reason}") from exc
    finally:
        client.close()
    entries = []
    for index, key in enumerate(keys):
        kind, (definition, meta) = replies[2 * index], replies[2 * index + 1]
        if kind != b"hash" or definition is None:
            continue
        entries.append(_redbeat_entry(key, definition, meta))
    return entries


def _redis_client(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
    except ValueError as exc:
        shown = redact_url_credentials(url)
        raise ReconcilerError(f"{shown!r} is not a Redis URL: {exc}") from exc


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _redbeat_entry(key: str, definition_text: bytes, meta_text: bytes | None) -> dict[str, Any]:
    where = f"redis[{key!r}]"
    unsupported: dict[str, Any] = {}
    try:
        definition = json.loads(definition_text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {"where": where, "name": key, "problem": f"definition is not valid JSON: {exc}"}
    if not isinstance(definition, dict):
        return {"where": where, "name": key, "problem": "definition is not a JSON object"}
    meta: Any = {}
    if meta_text:
        try:
            meta = json.loads(meta_text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}
    for field in definition:
        if field not in ("name", "task", "args", "kwargs", "options", "schedule", "enabled"):
            unsupported[field] = definition[field]
    return {
        "where": where,
        "name": str(definition.get("name") or key),
        "task": definition.get("task"),
        "args": definition.get("args") or [],
        "kwargs": definition.get("kwargs") or {},
        "options": definition.get("options") or {},
        "enabled": definition.get("enabled", True) is not False,
        "last_run_at": _redbeat_time(meta.get("last_run_at") if isinstance(meta, dict) else None),
        "total_run_count": (meta.get("total_run_count") if isinstance(meta, dict) else 0) or 0,
        "schedule": _redbeat_schedule(definition.get("schedule")),
        "unsupported": unsupported,
    }


def _redbeat_schedule(encoded: Any) -> dict[str, Any] | None:
    """RedBeat's JSON encoding of a Celery schedule (``__type__``: crontab, interval...)."""
    if not isinstance(encoded, dict):
        return None
    kind = encoded.get("__type__")
    if kind == "crontab":
        fields = {
            key: _cron_text(encoded.get(key, "*"))
            for key in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        }
        return {"kind": "crontab", **fields, "timezone": None}
    if kind == "interval":
        return {
            "kind": "interval",
            "seconds": float(encoded.get("every") or 0),
            "relative": bool(encoded.get("relative")),
        }
    return {"kind": str(kind)}


def _cron_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in sorted(value))
    return str(value).strip()


def _redbeat_time(value: Any) -> dt.datetime | None:
    """RedBeat's ``{"__type__": "datetime", ..., "timezone": key or seconds}``, as UTC."""
    if not isinstance(value, dict) or value.get("__type__") != "datetime":
        return None
    zone = value.get("timezone", "UTC")
    tzinfo: dt.tzinfo
    try:
        if isinstance(zone, (int, float)):
            tzinfo = dt.timezone(dt.timedelta(seconds=zone))
        else:
            tzinfo = ZoneInfo(str(zone))
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return None
    keys = ("year", "month", "day", "hour", "minute", "second", "microsecond")
    try:
        parts = {key: int(value[key]) for key in keys if key in value}
        return dt.datetime(tzinfo=tzinfo, **parts).astimezone(dt.UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# --- a watch loop applying the folder -------------------------------------------------


def watch_loops_applying(url: str, tasks_dir: Path) -> list[str]:
    """The running watch loops on this host that apply ``tasks_dir`` (or a folder holding
    it), as ``NAME (pid N)``; none when the database cannot be read (the import does not
    need it)."""

    try:
        engine = make_engine(url, create=False)
    except (ArgumentError, ValueError):
        return []
    now = dt.datetime.now(dt.UTC)
    here, target = socket.gethostname(), tasks_dir.resolve()
    try:
        with Session(engine) as session:
            loops = heartbeats.watches(session)
    except SQLAlchemyError:
        return []
    finally:
        engine.dispose()
    return [
        f"{loop.name} (pid {loop.pid})"
        for loop in loops
        if loop.alive(now)
        and loop.hostname == here
        and loop.tasks_dir
        and _within(target, Path(loop.tasks_dir).resolve())
    ]


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# --- the old scheduler after a cut-over (``reconcile doctor``) -------------------------


@dataclass(frozen=True)
class ImportedRow:
    """A live task that ``reconcile import`` wrote: its name there, its source, when applied."""

    name: str
    old_name: str
    source: str
    created_at: dt.datetime


def imported_rows(session: Session) -> list[ImportedRow]:
    """Live tasks carrying the ``imported-from`` label, by name."""
    query = (
        select(Task.name, Task.spec, Task.created_at)
        .where(Task.deleted_at.is_(None))
        .order_by(Task.name)
    )
    found = []
    for name, spec, created_at in session.execute(query):
        labels = spec.get("labels") if isinstance(spec, dict) else None
        if not isinstance(labels, dict) or not labels.get("imported-from"):
            continue
        old_name = str(labels.get("original-name") or name)
        found.append(ImportedRow(name, old_name, str(labels["imported-from"]), created_at))
    return found


@dataclass(frozen=True)
class OldRun:
    enabled: bool
    last_run_at: dt.datetime | None


@dataclass(frozen=True)
class OldActivity:
    """What another scheduler's store says about it running: each entry's last run by
    name, RedBeat's lock (seconds left, -1 without expiry; None when not held) and
    django-celery-beat's ``last_update`` (when its tasks were last edited)."""

    runs: dict[str, OldRun]
    lock: str | None = None
    lock_seconds: float | None = None
    changed_at: dt.datetime | None = None


def redbeat_activity(url: str, key_prefix: str = REDBEAT_PREFIX) -> OldActivity:
    """RedBeat's entries' last runs, and its lock key (``<prefix>:lock``) if held."""
    runs = {
        str(entry["name"]): OldRun(bool(entry.get("enabled")), entry.get("last_run_at"))
        for entry in read_redbeat(url, key_prefix)
        if not entry.get("problem")
    }
    return OldActivity(runs, key_prefix + ":lock", redbeat_lock(url, key_prefix))


def redbeat_lock(url: str, key_prefix: str = REDBEAT_PREFIX) -> float | None:
    """Seconds RedBeat's lock key (``<prefix>:lock``, held by its running beat) has left;
    -1 when it never expires, None when it is not held."""
    client = _redis_client(url)
    try:
        left = client.pttl(key_prefix + ":lock")
    except redis.RedisError as exc:
        reason = redact_url_credentials(str(exc))
        raise ReconcilerError(f"cannot read RedBeat's lock from Redis: {reason}") from exc
    finally:
        client.close()
    return None if left == -2 else (-1.0 if left == -1 else left / 1000)


def django_celery_beat_activity(url: str) -> OldActivity:
    """Each ``PeriodicTask``'s ``enabled`` and ``last_run_at``, and ``PeriodicTasks``'s
    ``last_update`` (bumped by Django whenever a task is saved outside beat)."""
    with _django_connection(url) as connection:
        metadata = MetaData()
        periodic = _periodic_table(connection, metadata)
        query = select(periodic.c.name, periodic.c.enabled, periodic.c.last_run_at)
        runs = {
            str(row.name): OldRun(bool(row.enabled), _utc(row.last_run_at))
            for row in connection.execute(query)
        }
        try:
            changes = Table(DJANGO_PREFIX + "periodictasks", metadata, autoload_with=connection)
        except NoSuchTableError:
            return OldActivity(runs)
        changed = connection.execute(select(func.max(changes.c.last_update))).scalar()
    return OldActivity(runs, changed_at=_utc(changed))
