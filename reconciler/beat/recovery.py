"""Recovering executions claimed but never published (a beat killed or stalled before
sending, a broker failure): taken over once their lease has lapsed, then sent, or failed
with the reason when the catch-up policy drops them (docs/guarantees.md)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.beat.health import TickStats
from reconciler.beat.message import Message
from reconciler.beat.refusals import publishable
from reconciler.beat.specs import SpecCache
from reconciler.store import leases, outbox

log = logging.getLogger("reconciler.beat")

RECOVERY_AGE = dt.timedelta(seconds=5)
"""A row claimed before claims had leases (migration 0004) is taken over this long after
it was queued, by the database's clock."""


def take_over(
    session: Any,
    lease: leases.Lease,
    limit: int,
    specs: SpecCache,
    grace: dt.timedelta,
    now: dt.datetime,
    stats: TickStats,
    clock: Callable[[], dt.datetime],
    held: Sequence[str] = (),
) -> list[Message]:
    """Take over up to ``limit`` unpublished rows for ``lease``; return the messages to send.

    Rows whose lease has lapsed by the database's clock, and this beat's own but those it
    ``held`` for their slot, are taken by compare-and-set (``leases.take_over``). A row
    within the grace is sent; an older one is sent only when its task has ``catchup:
    once`` and it is the task's latest such row; the rest are failed with the reason.
    """
    rows = leases.take_over(session, lease, RECOVERY_AGE.total_seconds(), limit, held)
    if not rows:
        return []
    found = specs.by_name(session, sorted({row.task_name for row in rows}))
    latest = {row.task_name: row.id for row in rows}
    send: list[Message] = []
    dropped: dict[str, list[int]] = {}
    for row in rows:
        entry = found.get(row.task_name)
        if entry is None:
            dropped.setdefault("its task is deleted", []).append(row.id)
            continue
        on_time = now - (row.scheduled_for or row.queued_at) <= grace
        if on_time or (entry.catchup == "once" and latest[row.task_name] == row.id):
            send.append(
                entry.message(
                    row.task_name,
                    row.celery_task_id,
                    row.scheduled_for,
                    row.trigger,
                    args=row.args,
                    kwargs=row.kwargs,
                )
            )
        else:
            why = f"later than the {grace.total_seconds():g} s grace (catchup: skip)"
            dropped.setdefault(why, []).append(row.id)
    for why, ids in dropped.items():
        reason = f"not published: beat or broker stopped before sending it; {why}"
        outbox.fail_unpublished(session, ids, reason, now)
        stats.failed_unpublished += len(ids)
        log.warning("beat: %d claimed execution(s) not sent: %s", len(ids), why)
    return publishable(session, send, clock())  # unset secret_env variables
