"""Store rows turned into the API's JSON objects (tasks, status, applies) and CSV rows.

Executions use ``reconciler.store.queries.execution_to_dict``, shared with
``reconcile history``; this module adds the task-side objects the HTTP API serves.
"""

from __future__ import annotations

from typing import Any

from reconciler.store.queries import TaskSummary, iso
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
)

_CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_INTERVAL_UNITS = (("days", "d"), ("hours", "h"), ("minutes", "m"), ("seconds", "s"))


def schedule_text(spec: dict[str, Any]) -> str | None:
    """The schedule in one short string: ``0 1 * * *``, ``every 1h30m``, ``at …``, ``once``.

    ``spec`` needs only ``type``, ``crontab``, ``interval`` and ``at``.
    """
    crontab = spec.get("crontab")
    if isinstance(crontab, dict):
        return " ".join(str(crontab.get(field, "*")) for field in _CRON_FIELDS)
    interval = spec.get("interval")
    if isinstance(interval, dict):
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


def task_item(summary: TaskSummary) -> dict[str, Any]:
    task = summary.task
    spec = summary.schedule
    return {
        "name": task.name,
        "description": task.description,
        "owner": task.owner,
        "type": task.type,
        "task": task.task,
        "enabled": task.enabled,
        "schedule": schedule_text(spec),
        "timezone": spec.get("timezone"),
        "next_run": iso(task.next_run_at),
        "last_run": iso(summary.last_run_at),
        "last_status": summary.last_status,
        "last_execution_id": summary.last_execution_id,
        "deleted_at": iso(task.deleted_at),
    }


def task_detail(summary: TaskSummary) -> dict[str, Any]:
    task = summary.task
    return {
        **task_item(summary),
        "definition": summary.definition,
        "source": {"path": task.source_path, "line": task.source_line},
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "version": task.version,
        "content_hash": task.content_hash,
        "schedule_anchor": iso(task.schedule_anchor),
        "last_finished_at": iso(summary.last_finished_at),
        "skipped_count": task.skipped_count or 0,
        "missed_count": task.missed_count or 0,
    }


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
    }


def apply_item(row: ApplyRecord, visible: set[str] | None = None) -> dict[str, Any]:
    """One apply; with ``visible``, the name lists keep only those names (owner tokens)."""

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
    }
