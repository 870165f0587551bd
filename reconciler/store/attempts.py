"""Apply attempts that applied nothing, in the apply log (docs/plan-and-apply.md, "The
apply log and sync status").

``reconciler.apply`` calls ``record_failure`` in a transaction of its own, after the
apply's transaction rolled back. An attempt identical to the latest row (same outcome,
errors, tasks directory and commit) is folded into it: ``attempts`` and
``last_attempt_at`` move, so a watch loop retrying the same broken files every resync
keeps one row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from reconciler.store.tables import ApplyRecord
from reconciler.vocabulary import Outcome

ERRORS_KEPT = 20
"""How many of an attempt's errors the row keeps (the count is whole)."""


@dataclass(frozen=True)
class Attempt:
    """A failed attempt: its outcome, its errors (located lines) and where it was made."""

    outcome: Outcome
    errors: list[str]
    tasks_dir: str
    git_commit: str | None
    git_dirty: bool | None
    duration_ms: int

    def same_as(self, row: ApplyRecord) -> bool:
        return (
            row.outcome == self.outcome
            and row.error_count == len(self.errors)
            and list(row.errors or []) == self.errors[:ERRORS_KEPT]
            and row.tasks_dir == self.tasks_dir
            and row.git_commit == self.git_commit
            and row.git_dirty == self.git_dirty
        )


def record_failure(session: Session, attempt: Attempt, now: dt.datetime) -> int:
    """Write ``attempt`` (or fold it into the latest row it repeats); its row id."""
    latest = session.scalars(select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(1)).first()
    if latest is not None and attempt.same_as(latest):
        session.execute(
            update(ApplyRecord)
            .where(ApplyRecord.id == latest.id)
            .values(
                attempts=ApplyRecord.attempts + 1,
                last_attempt_at=now,
                duration_ms=attempt.duration_ms,
            )
        )
        return latest.id
    result = session.execute(
        insert(ApplyRecord)
        .values(
            applied_at=now,
            created=0,
            updated=0,
            deleted=0,
            unchanged=0,
            created_names=[],
            updated_names=[],
            deleted_names=[],
            tasks_dir=attempt.tasks_dir,
            git_commit=attempt.git_commit,
            git_dirty=attempt.git_dirty,
            duration_ms=attempt.duration_ms,
            outcome=attempt.outcome,
            error_count=len(attempt.errors),
            errors=attempt.errors[:ERRORS_KEPT],
            attempts=1,
            last_attempt_at=now,
        )
        .returning(ApplyRecord.id)
    )
    return int(result.scalar_one())


def latest_outcome(session: Session) -> str | None:
    """The outcome of the latest attempt (None: none recorded)."""
    outcome: str | None = session.scalar(
        select(ApplyRecord.outcome).order_by(ApplyRecord.id.desc()).limit(1)
    )
    return outcome
