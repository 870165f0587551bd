"""What the page's live channel watches (docs/page.md, "Live"): one statement whose every
part the database answers from an index (a maximum, a minimum or a count over one
status's rows), so a process can read it every second for all its clients."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import ScalarSelect, func, select

from reconciler.store.reads.reader import Read, Row
from reconciler.store.tables import ApplyRecord, ChangeMarker, Task, TaskExecution
from reconciler.vocabulary import Status


class Marks(NamedTuple):
    """The values that move when something the page shows changes."""

    tasks: tuple[Any, ...]
    """Apply's change counter and the earliest next run (beat moves it as it fires or
    skips); a task's last status and health follow its executions (below)."""
    executions: tuple[Any, ...]
    """The newest execution, the latest finish, and how many are pending, started or
    retrying: a new row or a change of status moves one of them."""
    applies: tuple[Any, ...]
    """The newest apply attempt and how often it was made (a repeated failure is folded
    into its row)."""


def _unfinished(status: Status) -> ScalarSelect[Any]:
    return (
        select(func.count())
        .select_from(TaskExecution)
        .where(TaskExecution.status == status)
        .scalar_subquery()
    )


_MARKS = select(
    select(ChangeMarker.seq).where(ChangeMarker.id == 1).scalar_subquery(),
    select(func.min(Task.next_run_at)).scalar_subquery(),
    select(func.max(TaskExecution.id)).scalar_subquery(),
    # The partial index of finished rows (the SQLite planner needs the term repeated).
    select(func.max(TaskExecution.finished_at))
    .where(TaskExecution.finished_at.is_not(None))
    .scalar_subquery(),
    _unfinished(Status.PENDING),
    _unfinished(Status.STARTED),
    _unfinished(Status.RETRY),
    select(func.max(ApplyRecord.id)).scalar_subquery(),
    select(ApplyRecord.attempts).order_by(ApplyRecord.id.desc()).limit(1).scalar_subquery(),
)


def _marks(rows: list[Row]) -> Marks:
    seq, next_run, newest, finished, pending, started, retrying, apply, attempts = rows[0]
    executions = (newest, finished, pending, started, retrying)
    return Marks((seq, next_run, *executions), executions, (apply, attempts))


MARKS: Read[Marks] = Read(lambda postgres: _MARKS, {}, _marks)
"""The ``Marks`` now, for ``Reader.run`` or ``run_async``."""
