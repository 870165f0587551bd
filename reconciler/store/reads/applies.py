"""The apply log's pages, newest first, and which tasks an owner may see in it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.store.reads.cursors import check_limit, decode_id_cursor, encode_cursor
from reconciler.store.reads.reader import plain
from reconciler.store.tables import ApplyRecord, Task


def list_applies(
    session: Session, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[ApplyRecord], str | None]:
    """One page of the apply log, newest first (keyset on id)."""
    check_limit(limit)
    stmt = select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(limit + 1)
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
