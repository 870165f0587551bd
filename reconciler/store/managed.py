"""The task rows as the worker's tracking reads them: to name an execution published
outside the reconciler after the managed task it belongs to (docs/tracking.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.store.tables import ChangeMarker, Task


@dataclass(frozen=True)
class ManagedTask:
    """A task row as tracking needs it: to name executions published outside the reconciler."""

    name: str
    celery_name: str
    live: bool


def managed_tasks(session: Session) -> tuple[int, list[ManagedTask]]:
    """Every task row (deleted ones too) with the change marker it was read at."""
    seq = session.scalar(select(ChangeMarker.seq).where(ChangeMarker.id == 1)) or 0
    rows = session.execute(select(Task.name, Task.task, Task.deleted_at).order_by(Task.name))
    return int(seq), [ManagedTask(name, celery, deleted is None) for name, celery, deleted in rows]


def change_seq(session: Session) -> int:
    """The change marker alone: cheap enough to poll before re-reading ``managed_tasks``."""
    return int(session.scalar(select(ChangeMarker.seq).where(ChangeMarker.id == 1)) or 0)


def pick_by_arguments(
    session: Session, names: Sequence[str], args: list[Any], kwargs: dict[str, Any]
) -> str | None:
    """Among several tasks sharing one Celery task, the one defined with these arguments."""
    rows = session.execute(select(Task.name, Task.spec).where(Task.name.in_(names)))
    matches = sorted(
        name
        for name, spec in rows
        if list(spec.get("args") or []) == list(args) and dict(spec.get("kwargs") or {}) == kwargs
    )
    return matches[0] if matches else None
