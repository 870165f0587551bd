"""The project's words, defined once: execution statuses, task types, triggers, apply
outcomes and the headers beat's messages carry (docs/tracking.md, docs/task-files.md)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An execution's status, as stored in ``task_executions.status`` and served."""

    PENDING = "pending"
    STARTED = "started"
    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    REVOKED = "revoked"


#: The statuses after which nothing more happens to an execution.
FINISHED = frozenset({Status.SUCCESS, Status.FAILURE, Status.REVOKED})


class TaskType(StrEnum):
    """How a task fires: once when applied, once at a time, or on a schedule."""

    ASYNC = "async"
    SCHEDULED = "scheduled"
    PERIODIC = "periodic"


class Trigger(StrEnum):
    """What started an execution: beat's schedule, ``reconcile trigger``, or other code."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    EXTERNAL = "external"


class Outcome(StrEnum):
    """What became of an apply attempt (docs/plan-and-apply.md, "The apply log and sync status")."""

    APPLIED = "applied"  # the database holds what the files say
    INVALID = "invalid"  # the task files have errors; nothing applied
    REFUSED = "refused"  # a guard or the database refused the plan; nothing applied
    FAILED = "failed"  # the apply could not finish (lock timeout, database error)


class Header(StrEnum):
    """Message headers set by the reconciler's publisher and read by tracking."""

    TRIGGER = "reconciler_trigger"  # the execution's trigger: its row exists, claim it
    SLOT = "reconciler_slot"  # the slot time the message fires


#: RedBeat's default key prefix (its ``redbeat_key_prefix``), where ``reconcile import``
#: looks for entries (docs/import.md).
REDBEAT_PREFIX = "redbeat:"
