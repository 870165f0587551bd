"""The apply log's pages, newest first, which tasks an owner may see in it, and whether
the task files are in sync (the latest attempt applied) as status, doctor, the page and
``/metrics`` tell it (docs/plan-and-apply.md, "The apply log and sync status")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler.store.reads.cursors import check_limit, decode_id_cursor, encode_cursor
from reconciler.store.reads.reader import plain
from reconciler.store.tables import ApplyRecord, Task
from reconciler.vocabulary import Outcome

ERRORS_SHOWN = 5
"""How many of a failed attempt's errors the sync status lists."""


def list_applies(
    session: Session,
    *,
    limit: int = 50,
    cursor: str | None = None,
    outcomes: Collection[Outcome] | None = None,
) -> tuple[list[ApplyRecord], str | None]:
    """One page of the apply log, newest first (keyset on id), of ``outcomes`` only if given."""
    check_limit(limit)
    stmt = select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(limit + 1)
    if outcomes:
        stmt = stmt.where(ApplyRecord.outcome.in_([str(o) for o in outcomes]))
    if cursor is not None:
        stmt = stmt.where(ApplyRecord.id < decode_id_cursor(cursor, "a"))
    rows = list(session.scalars(stmt))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor("a", rows[-1].id)
    return rows, None


def owned_names(session: Session, owner: str, names: Sequence[str]) -> set[str]:
    """Which of ``names`` are tasks of ``owner`` (to filter the apply log for an owner)."""
    if not names:
        return set()
    stmt = select(Task.name).where(Task.owner == owner, Task.name.in_(list(names)))
    return set(plain(session).scalars(stmt))


@dataclass(frozen=True)
class SyncState:
    """The latest apply attempt, the latest that applied, and since when the attempts
    after it failed (None when the latest applied)."""

    latest: ApplyRecord | None
    last_applied: ApplyRecord | None
    since: dt.datetime | None

    @property
    def in_sync(self) -> bool:
        return self.latest is not None and self.latest.outcome == Outcome.APPLIED

    @property
    def state(self) -> str:
        if self.latest is None:
            return "never_applied"
        return "in_sync" if self.in_sync else "out_of_sync"

    def line(self, now: dt.datetime) -> str:
        """``in sync with abc1234`` or ``OUT OF SYNC: 2 errors at def5678 since 14:02 UTC;
        last applied abc1234``."""
        latest, applied = self.latest, self.last_applied
        if latest is None:
            return "never applied: run 'reconcile' (or 'reconcile watch') on the task files"
        if self.in_sync:
            return f"in sync with {_version(latest, now)}"
        what = {
            Outcome.INVALID: _plural(latest.error_count, "error"),
            Outcome.REFUSED: "apply refused",
        }.get(Outcome(latest.outcome), "apply failed")
        where = f" at {_commit(latest)}" if latest.git_commit else ""
        since = _clock(self.since or latest.applied_at, now)
        last = f"last applied {_version(applied, now)}" if applied else "never applied"
        return f"OUT OF SYNC: {what}{where} since {since}; {last}"

    def errors(self) -> list[str]:
        """The first errors of the latest attempt when it failed, with how many more."""
        if self.latest is None or self.in_sync:
            return []
        errors = list(self.latest.errors or [])
        shown = errors[:ERRORS_SHOWN]
        if self.latest.error_count > len(shown):
            more = self.latest.error_count - len(shown)
            shown.append(f"... and {more} more ('reconcile validate' lists them all)")
        return shown

    def to_dict(self, now: dt.datetime) -> dict[str, Any]:
        """The JSON form (``reconcile status --format json``'s ``sync``)."""
        latest, applied = self.latest, self.last_applied
        return {
            "state": self.state,
            "line": self.line(now),
            "outcome": latest.outcome if latest else None,
            "error_count": latest.error_count if latest else 0,
            "errors": list(latest.errors or []) if latest and not self.in_sync else [],
            "git_commit": latest.git_commit if latest else None,
            "since": _iso(self.since),
            "last_attempt_at": _iso(attempted_at(latest)) if latest else None,
            "last_applied_at": _iso(applied.applied_at) if applied else None,
            "last_applied_commit": applied.git_commit if applied else None,
        }


def sync_state(session: Session) -> SyncState:
    """Three index reads: the latest attempt, the latest applied, the first failure after."""
    latest = session.scalars(select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(1)).first()
    if latest is None or latest.outcome == Outcome.APPLIED:
        return SyncState(latest, latest, None)
    applied = session.scalars(
        select(ApplyRecord)
        .where(ApplyRecord.outcome == Outcome.APPLIED)
        .order_by(ApplyRecord.id.desc())
        .limit(1)
    ).first()
    after = select(func.min(ApplyRecord.applied_at))
    if applied is not None:
        after = after.where(ApplyRecord.id > applied.id)
    return SyncState(latest, applied, session.scalar(after))


def attempted_at(row: ApplyRecord) -> dt.datetime:
    """When the attempt was last made (a repeated failure moves it)."""
    return row.last_attempt_at or row.applied_at


def _commit(row: ApplyRecord) -> str:
    return (row.git_commit or "")[:7]


def _version(row: ApplyRecord, now: dt.datetime) -> str:
    """A commit (with a note when the checkout had local changes), else the time."""
    if row.git_commit:
        return _commit(row) + (" (with local changes)" if row.git_dirty else "")
    return f"{row.tasks_dir} at {_clock(row.applied_at, now)} (no git commit)"


def _clock(moment: dt.datetime, now: dt.datetime) -> str:
    """``14:02 UTC`` today, else ``2026-12-04 14:02 UTC``."""
    moment = moment.astimezone(dt.UTC)
    if moment.date() == now.astimezone(dt.UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
