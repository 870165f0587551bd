"""Execution tracking: Celery signals in the user's app recorded in ``task_executions``.

``install(app)`` is the one call a Celery app makes (the demo app does). Signal handlers
only note what happened and queue it; a writer thread per process resolves which managed
task an execution belongs to and upserts batches through ``reconciler.store.executions``,
so a slow or absent database never slows down or fails a task.
"""

from __future__ import annotations

from reconciler.tracking.hooks import CLAIM_ATTRIBUTE, hook_tasks
from reconciler.tracking.signals import flush, install, uninstall
from reconciler.tracking.tracker import (
    DEADLINE_GRACE,
    DEFAULT_LOST_AFTER,
    Tracker,
    database_url_for,
    lost_after_for,
)
from reconciler.tracking.values import RESULT_LIMIT, describe_error, encode_result, json_safe
from reconciler.tracking.writer import Step, Writer

__all__ = [
    "CLAIM_ATTRIBUTE",
    "DEADLINE_GRACE",
    "DEFAULT_LOST_AFTER",
    "RESULT_LIMIT",
    "Step",
    "Tracker",
    "Writer",
    "database_url_for",
    "describe_error",
    "encode_result",
    "flush",
    "hook_tasks",
    "install",
    "json_safe",
    "lost_after_for",
    "uninstall",
]
