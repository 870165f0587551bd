"""The manual run (``reconcile trigger``): record one ``manual`` execution, claimed by
this command while it sends, and send it through the app's broker (docs/cli.md)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery

from reconciler.beat.message import PublishFailed, message_for, utcnow
from reconciler.beat.publisher import CeleryPublisher
from reconciler.beat.refusals import publishable
from reconciler.beat.sending import LEASE
from reconciler.core.secretref import refusal
from reconciler.core.spec import stored_spec
from reconciler.errors import ReconcilerError, UnknownTask
from reconciler.store import leases, outbox, scheduling
from reconciler.store.database import Database
from reconciler.vocabulary import Trigger


@dataclass(frozen=True)
class Triggered:
    """What ``trigger`` sent: the execution's Celery task id and when it was queued."""

    name: str
    celery_task_id: str
    queued_at: dt.datetime


def trigger(
    database: Database,
    app: Celery,
    name: str,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Triggered:
    """Run task ``name`` now, outside its schedule: record a ``manual`` execution and send it.

    ``args`` / ``kwargs`` replace the task's own when given. A broker failure marks the
    row failed with the reason and raises, so no row is left waiting for nothing.
    """
    now = now or utcnow()
    with scheduling.transaction(database) as session:
        row = scheduling.find_task(session, name)
        if row is None:
            raise UnknownTask(f"no task named {name!r}; `reconcile status` lists the tasks")
        if row.deleted:
            raise UnknownTask(
                f"task {name!r} is deleted (its history is kept); define it again in the "
                f"task files to run it"
            )
        spec = stored_spec(name, row.spec)
        message = message_for(
            spec, str(uuid.uuid4()), None, Trigger.MANUAL, args=args, kwargs=kwargs
        )
        outbox.insert_executions(
            session,
            [
                outbox.NewExecution(
                    name, message.task_id, Trigger.MANUAL, None, message.args, message.kwargs, now
                )
            ],
            # Claimed by this command while it sends; beat takes it over if it dies first.
            leases.Lease(f"trigger:{socket.gethostname()}:{os.getpid()}", LEASE.total_seconds()),
        )
        refused = not publishable(session, [message], now, warn=False)
    if refused:
        raise ReconcilerError(refusal(name, message.args, message.kwargs) or "not published")
    publisher = CeleryPublisher(app)
    try:
        publisher.publish([message])
    except PublishFailed as exc:
        with scheduling.transaction(database) as session:
            row_id = outbox.execution_id(session, message.task_id)
            if row_id is not None:
                outbox.fail_unpublished(session, [row_id], f"not published: {exc}", utcnow())
        raise ReconcilerError(
            f"could not send {name!r} to the broker ({exc}); check --broker-url / "
            f"RECONCILER_BROKER_URL and that the broker is running"
        ) from exc
    finally:
        publisher.close()
    with scheduling.transaction(database) as session:
        outbox.mark_published(session, [message.task_id], utcnow())
    return Triggered(name, message.task_id, now)
