"""Claims' owners and leases: who may publish a claimed execution, and until when.

Beat writes ``claimed_by`` and ``lease_until`` with each execution it claims. Until the
lease lapses only its owner may publish the row; the owner renews it by compare-and-set
before publishing late, and any beat takes over a row whose lease has lapsed, by
compare-and-set too (docs/guarantees.md). Leases are judged by the database's clock:
PostgreSQL's ``clock_timestamp()``, never a beat host's clock. SQLite lives on one host,
so there the database's clock is this process's clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Table, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from reconciler.store.pending import Unpublished
from reconciler.store.tables import TaskExecution
from reconciler.vocabulary import Status, Trigger

_executions: Table = TaskExecution.__table__  # type: ignore[assignment]

_RECORDED = (Trigger.SCHEDULE, Trigger.MANUAL)
"""Triggers whose execution row is written before the message is sent (never ``external``)."""


def host_now() -> dt.datetime:
    """This process's clock: SQLite's "database clock" (one host by definition)."""
    return dt.datetime.now(dt.UTC)


def database_now(session: Session) -> dt.datetime:
    """The database's now, which judges leases (PostgreSQL: ``clock_timestamp()``)."""
    if session.get_bind().dialect.name != "postgresql":
        return host_now()
    now: dt.datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    return now.astimezone(dt.UTC)


@dataclass(frozen=True)
class Lease:
    """A claim's owner (a beat instance) and how long, by the database's clock, it holds it."""

    owner: str
    seconds: float


_FIELDS = "id task_name celery_task_id trigger scheduled_for args kwargs queued_at"
_UNPUBLISHED = [_executions.c[name] for name in _FIELDS.split()]

_TAKE_OVER_PG = text(
    f"""
    WITH lapsed AS (
        SELECT id FROM task_executions
        WHERE published_at IS NULL AND status = '{Status.PENDING}'
          AND trigger IN ('{Trigger.SCHEDULE}', '{Trigger.MANUAL}')
          AND NOT celery_task_id = ANY(CAST(:held AS VARCHAR[]))
          AND (claimed_by = :owner
               OR lease_until < clock_timestamp()
               OR (lease_until IS NULL
                   AND queued_at < clock_timestamp()
                                   - CAST(:age AS DOUBLE PRECISION) * interval '1 second'))
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE task_executions AS e
    SET claimed_by = :owner,
        lease_until = clock_timestamp() + CAST(:lease AS DOUBLE PRECISION) * interval '1 second'
    FROM lapsed
    WHERE e.id = lapsed.id
    RETURNING e.id, e.task_name, e.celery_task_id, e.trigger, e.scheduled_for, e.args,
              e.kwargs, e.queued_at
    """
)


def take_over(
    session: Session,
    lease: Lease,
    legacy_age: float,
    limit: int,
    held: Sequence[str] = (),
) -> list[Unpublished]:
    """Claim for ``lease.owner`` up to ``limit`` executions never sent whose lease lapsed.

    A row is taken when its lease has lapsed by the database's clock, when it is the
    owner's own and not among the Celery task ids it ``held`` for a later slot, or (rows
    written before leases existed) when it was queued more than ``legacy_age`` seconds
    ago. It is a compare-and-set: rows another beat holds or is taking over (``SKIP
    LOCKED``) are left alone, so no two beats get the same row.
    Returned oldest first.
    """
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "owner": lease.owner,
            "lease": lease.seconds,
            "age": legacy_age,
            "limit": limit,
            "held": list(held),
        }
        rows = [Unpublished(**row._mapping) for row in session.execute(_TAKE_OVER_PG, params)]
        return sorted(rows, key=lambda row: row.id)
    c = _executions.c
    now = host_now()
    lapsed = or_(
        c.claimed_by == lease.owner,
        c.lease_until < now,
        and_(c.lease_until.is_(None), c.queued_at < now - dt.timedelta(seconds=legacy_age)),
    )
    candidates = (
        select(c.id)
        .where(
            c.published_at.is_(None),
            c.status == Status.PENDING,
            c.trigger.in_(_RECORDED),
            c.celery_task_id.not_in(list(held)),
            lapsed,
        )
        .order_by(c.id)
        .limit(limit)
    )
    statement = (
        update(_executions)
        .where(c.id.in_(candidates.scalar_subquery()))
        .values(claimed_by=lease.owner, lease_until=now + dt.timedelta(seconds=lease.seconds))
        .returning(*_UNPUBLISHED)
    )
    rows = [Unpublished(**row._mapping) for row in session.execute(statement)]
    return sorted(rows, key=lambda row: row.id)


_RENEW_PG = text(
    """
    UPDATE task_executions
    SET lease_until = clock_timestamp() + CAST(:lease AS DOUBLE PRECISION) * interval '1 second'
    WHERE celery_task_id = ANY(CAST(:ids AS VARCHAR[])) AND claimed_by = :owner
      AND published_at IS NULL AND lease_until > clock_timestamp()
    RETURNING celery_task_id
    """
)


def renew(session: Session, lease: Lease, celery_task_ids: Sequence[str]) -> set[str]:
    """Extend the lease on those of ``celery_task_ids`` the owner still holds, unsent.

    A compare-and-set by the database's clock: a row whose lease has lapsed is not
    renewed, even if no other beat has taken it yet. Returns the ids renewed: only
    those may still be published by this owner.
    """
    if not celery_task_ids:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        params = {"ids": list(celery_task_ids), "owner": lease.owner, "lease": lease.seconds}
        return set(session.scalars(_RENEW_PG, params))
    c = _executions.c
    now = host_now()
    statement = (
        update(_executions)
        .where(
            c.celery_task_id.in_(list(celery_task_ids)),
            c.claimed_by == lease.owner,
            c.published_at.is_(None),
            c.lease_until > now,
        )
        .values(lease_until=now + dt.timedelta(seconds=lease.seconds))
        .returning(c.celery_task_id)
    )
    return set(session.scalars(statement))


_GIVE_UP_PG = text(
    """
    UPDATE task_executions SET lease_until = clock_timestamp()
    WHERE celery_task_id = ANY(CAST(:ids AS VARCHAR[])) AND claimed_by = :owner
      AND published_at IS NULL
    """
)


def give_up(session: Session, lease: Lease, celery_task_ids: Sequence[str]) -> None:
    """End the owner's lease on these unsent rows now: any beat's recovery takes them
    over at once instead of after the lease (a beat stopping with claims held ahead)."""
    if not celery_task_ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_GIVE_UP_PG, {"ids": list(celery_task_ids), "owner": lease.owner})
        return
    c = _executions.c
    session.execute(
        update(_executions)
        .where(
            c.celery_task_id.in_(list(celery_task_ids)),
            c.claimed_by == lease.owner,
            c.published_at.is_(None),
        )
        .values(lease_until=host_now())
    )
