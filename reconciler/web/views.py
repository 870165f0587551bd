"""Store rows turned into the API's JSON objects (tasks, status, applies) and CSV rows.

Executions are served from the store's records (``reconciler.web.body``); this module
makes the task-side objects.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

from reconciler.core.describe import schedule_words
from reconciler.core.durations import format_duration, parse_duration
from reconciler.core.redact import redact_definition
from reconciler.core.schedule import next_fire_times
from reconciler.core.schedulefields import schedule_text
from reconciler.core.spec import stored_spec
from reconciler.core.times import iso
from reconciler.core.timing import spread_offset, window_end, window_start
from reconciler.core.zones import zone
from reconciler.errors import ReconcilerError
from reconciler.store.reads.applies import attempted_at
from reconciler.store.reads.detail import TaskSummary
from reconciler.store.reads.tasks import TaskListRow
from reconciler.store.tables import ApplyRecord

TASK_CSV_COLUMNS = (
    "name",
    "owner",
    "type",
    "task",
    "description",
    "enabled",
    "schedule",
    "timezone",
    "next_run",
    "last_run",
    "last_status",
    "last_execution_id",
    "last_success_at",
    "last_failure_at",
    "consecutive_failures",
)


def task_item(row: TaskListRow) -> dict[str, Any]:
    """A task as lists show it: the row's fields are the API's keys, the schedule in the
    words the CLI shows."""
    item = row._asdict()
    item["schedule"] = schedule_words(row.schedule, row.timezone)
    active = json.loads(row.active) if isinstance(row.active, str) else row.active
    item["active"] = active if isinstance(active, dict) else None
    item["in_window"] = in_window(item["active"], row.timezone)
    return item


NEXT_FIRES = 5
"""How many fire times a task's detail lists."""


def in_window(
    active: dict[str, Any] | None, timezone: str | None, now: dt.datetime | None = None
) -> bool:
    """False when the task's ``active`` window (docs/task-files.md) has not begun or is over."""
    if not active:
        return True
    now = now or dt.datetime.now(dt.UTC)
    try:
        tz = zone(timezone or "UTC")
        if active.get("from") and now < window_start(str(active["from"]), tz):
            return False
        return not (active.get("until") and now >= window_end(str(active["until"]), tz))
    except (ValueError, KeyError):  # a window this version cannot read: not judged
        return True


def next_fires(summary: TaskSummary, now: dt.datetime, count: int = NEXT_FIRES) -> list[str]:
    """The next fire times as beat computes them (the stored anchor, spread, window and
    calendars), ISO 8601 in UTC; none for a deleted or disabled task."""
    task = summary.task
    if task.deleted_at is not None or not task.enabled:
        return []
    try:
        spec = stored_spec(task.name, summary.definition)
    except ReconcilerError:
        return []
    anchor = task.schedule_anchor
    if anchor is not None and anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=dt.UTC)
    return [iso(moment) or "" for moment in next_fire_times(spec, now, count, anchor)]


def source_links(
    path: str, line: int, commit: str | None, repository_url: str | None
) -> dict[str, str | None]:
    """The commit the task files were last applied from and, with a repository URL, links
    to that commit and to the task's file at it (a relative source path is taken from the
    repository's root)."""
    if repository_url is None or commit is None:
        return {"commit": commit, "commit_url": None, "url": None}
    file_url = None
    relative = path.removeprefix("./")
    if relative and not relative.startswith(("/", "..")):
        file_url = f"{repository_url}/blob/{commit}/{quote(relative)}#L{line}"
    return {"commit": commit, "commit_url": f"{repository_url}/commit/{commit}", "url": file_url}


def task_detail(
    summary: TaskSummary,
    *,
    now: dt.datetime | None = None,
    commit: str | None = None,
    repository_url: str | None = None,
) -> dict[str, Any]:
    """A task with its whole definition: the list's fields and more; ``commit`` is the
    last applied commit, linked under ``repository_url`` when one is configured."""
    task = summary.task
    spec = summary.schedule
    now = now or dt.datetime.now(dt.UTC)
    definition = redact_definition(summary.definition)  # docs/security.md
    active = definition.get("active")
    active = active if isinstance(active, dict) else None
    return {
        "name": task.name,
        "description": task.description,
        "owner": task.owner,
        "type": task.type,
        "task": task.task,
        "enabled": task.enabled,
        "schedule": schedule_words(schedule_text(spec), spec.get("timezone")),
        "timezone": spec.get("timezone"),
        "next_run": iso(task.next_run_at),
        "last_run": iso(summary.last_run_at),
        "last_status": summary.last_status,
        "last_execution_id": summary.last_execution_id,
        "deleted_at": iso(task.deleted_at),
        **_health(summary),
        "active": active,
        "in_window": in_window(active, spec.get("timezone"), now),
        "definition": definition,
        "args": definition.get("args") or [],
        "kwargs": definition.get("kwargs") or {},
        "options": definition.get("options") or {},
        "labels": definition.get("labels") or {},
        "overlap": definition.get("overlap") or "allow",
        "catchup": definition.get("catchup") or "skip",
        "next_fires": next_fires(summary, now),
        "source": {
            "path": task.source_path,
            "line": task.source_line,
            **source_links(task.source_path, task.source_line, commit, repository_url),
        },
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "version": task.version,
        "content_hash": task.content_hash,
        "schedule_anchor": iso(task.schedule_anchor),
        "last_finished_at": iso(summary.last_finished_at),
        "skipped_count": task.skipped_count or 0,
        "missed_count": task.missed_count or 0,
        "calendar_skipped_count": task.calendar_skipped_count or 0,
        "spread_offset": _spread_offset(task.name, summary.definition.get("spread")),
    }


def _spread_offset(name: str, spread: Any) -> str | None:
    """The offset ``spread`` gives this task (docs/task-files.md), as a duration."""
    if not isinstance(spread, str):
        return None
    try:
        return format_duration(spread_offset(name, parse_duration(spread, allow_zero=True)))
    except ValueError:
        return None


def task_status(summary: TaskSummary) -> dict[str, Any]:
    task = summary.task
    return {
        "name": task.name,
        "enabled": task.enabled,
        "deleted": task.deleted_at is not None,
        "last_status": summary.last_status,
        "last_run": iso(summary.last_run_at),
        "last_finished_at": iso(summary.last_finished_at),
        "last_execution_id": summary.last_execution_id,
        "next_run": iso(task.next_run_at),
        **_health(summary),
    }


def _health(summary: TaskSummary) -> dict[str, Any]:
    """Last success, last failure (finish times) and failures since that success."""
    return {
        "last_success_at": iso(summary.last_success_at),
        "last_failure_at": iso(summary.last_failure_at),
        "consecutive_failures": summary.consecutive_failures,
    }


def apply_item(row: ApplyRecord, visible: set[str] | None = None) -> dict[str, Any]:
    """One apply attempt; with ``visible`` (owner tokens), the name lists keep only those
    names and the errors, which may name any owner's files and tasks, are left out."""

    def names(values: list[str] | None) -> list[str]:
        return [n for n in values or [] if visible is None or n in visible]

    return {
        "id": row.id,
        "applied_at": iso(row.applied_at),
        "created": row.created,
        "updated": row.updated,
        "deleted": row.deleted,
        "unchanged": row.unchanged,
        "created_names": names(row.created_names),
        "updated_names": names(row.updated_names),
        "deleted_names": names(row.deleted_names),
        "tasks_dir": row.tasks_dir,
        "git_commit": row.git_commit,
        "git_dirty": row.git_dirty,
        "duration_ms": row.duration_ms,
        "outcome": row.outcome,
        "error_count": row.error_count,
        "errors": list(row.errors or []) if visible is None else [],
        "attempts": row.attempts,
        "last_attempt_at": iso(attempted_at(row)),
    }
