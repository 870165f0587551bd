"""Sending executions to the broker: the Celery side of the Beat tick, and manual runs.

``CeleryPublisher`` sends a batch of messages over one producer connection, by task
name (beat never imports the user's task modules). ``trigger`` records one ``manual``
execution and sends it (``reconcile trigger``). Both write the execution row before the
message leaves, so a worker always finds its row.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.app.routes import MapRoute

from reconciler.beat.refusals import publishable
from reconciler.beat.ticker import LEASE, Message, PublishFailed, message_for, utcnow
from reconciler.core.redact import redacted_repr
from reconciler.core.secretref import refusal, resolve
from reconciler.core.spec import stored_spec
from reconciler.errors import ReconcilerError, UnknownTask
from reconciler.store import leases, scheduling
from reconciler.store.database import Database

log = logging.getLogger("reconciler.beat")

CONNECT_TIMEOUT = 2.0
IO_TIMEOUT = 3.0
"""A broker that takes longer than this to take or answer one write fails the publish, so
a stalled broker is an outage like a refused one. ``reconciler.beat.ticker.LEASE_MARGIN``
outlasts a connect plus one such wait."""
BATCH = 200
REPR_LIMIT = 1024
"""Messages per pipelined flush on transports that batch (Redis)."""
TRIGGER_HEADER = "reconciler_trigger"
"""Says the execution row exists already (tracking must not record it as external)."""
SLOT_HEADER = "reconciler_slot"
"""The slot a scheduled message was fired for (ISO 8601), for consumers and measurements."""


class CeleryPublisher:
    """Publishes messages through the app's AMQP layer on one long-lived producer.

    It builds each message as ``send_task`` does (routing, expiry, time limits) but
    without ``send_task``'s per-call result-backend subscription, and it does not retry
    inside a publish: a broker failure stops the batch and the tick decides what next.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._producer: Any = None
        self._declared: set[str] = set()
        self._routes: dict[tuple[str, str | None], dict[str, Any]] = {}

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            connection = self.app.connection_for_write()
            # Set before the first channel reads them; the app's own settings win.
            deadlines = _deadlines(connection.transport.driver_type)
            connection.transport_options = {**deadlines, **connection.transport_options}
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
            self._connection = connection
            self._producer = self.app.amqp.Producer(connection, auto_declare=True)
        return self._producer

    def publish(self, messages: Sequence[Message]) -> list[str]:
        sent: list[str] = []
        try:
            producer = self._ensure_producer()
            if not getattr(producer, "supports_batch_publish", False):
                for message in messages:
                    self._send(producer, message)
                    sent.append(message.task_id)
                return sent
            # Redis: one pipelined round trip per chunk instead of one per message. A
            # chunk counts as sent once its flush returned.
            for start in range(0, len(messages), BATCH):
                chunk = messages[start : start + BATCH]
                with producer.batch(max_size=BATCH * 4):
                    for message in chunk:
                        self._send(producer, message)
                sent.extend(message.task_id for message in chunk)
        except Exception as exc:  # any transport error means "broker down"
            self.close()
            raise PublishFailed(f"broker: {type(exc).__name__}: {exc}", sent) from exc
        return sent

    def _send(self, producer: Any, message: Message) -> None:
        amqp = self.app.amqp
        options = dict(message.options)
        expires = options.pop("expires", None)
        time_limit = options.pop("time_limit", None)
        soft_time_limit = options.pop("soft_time_limit", None)
        routed = self._route(options, message)
        if expires is not None:
            routed["expiration"] = expires
        body = amqp.create_task_message(
            message.task_id,
            message.task,
            resolve(message.args),  # secret_env references: only in what is sent
            resolve(message.kwargs),
            expires=expires,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            # Plain reprs: Celery's safe repr costs more than the rest of the message.
            argsrepr=redacted_repr(message.args, REPR_LIMIT),
            kwargsrepr=redacted_repr(message.kwargs, REPR_LIMIT),
        )
        headers = {
            TRIGGER_HEADER: message.trigger,
            SLOT_HEADER: message.scheduled_for.isoformat() if message.scheduled_for else None,
        }
        queue = routed.get("queue")
        if queue is not None and getattr(queue, "name", None) not in self._declared:
            # Declared once per connection, not once per message.
            producer.maybe_declare(queue)
            self._declared.add(queue.name)
        amqp.send_task_message(
            producer, message.task, body, retry=False, headers=headers, declare=[], **routed
        )

    def _route(self, options: dict[str, Any], message: Message) -> dict[str, Any]:
        """The app's routing for this message; cached when routes depend on the name only."""
        router = self.app.amqp.router
        if not all(isinstance(route, MapRoute) for route in router.routes):
            routed: dict[str, Any] = router.route(
                options, message.task, message.args, message.kwargs
            )
            return routed
        queue = options.pop("queue", None)
        key = (message.task, queue)
        if key not in self._routes:
            self._routes[key] = router.route(
                {"queue": queue} if queue else {}, message.task, message.args, message.kwargs
            )
        return {**self._routes[key], **options}

    def reachable(self) -> bool:
        try:
            self._ensure_producer()
        except Exception:  # any transport error means "still down"
            self.close()
            return False
        return True

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        self._declared = set()
        if connection is not None:
            try:
                connection.release()
            except Exception:  # closing a broken connection may fail too
                log.debug("beat: closing the broker connection failed", exc_info=True)


def _deadlines(driver: str) -> dict[str, float]:
    """Transport options that bound each connect, read and write on this broker."""
    if driver == "redis":
        return {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": IO_TIMEOUT}
    if driver == "amqp":
        return {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": IO_TIMEOUT,
                "write_timeout": IO_TIMEOUT}  # fmt: skip
    return {}  # the embedded SQLite broker: a local file, bounded by its busy timeout


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
        message = message_for(spec, str(uuid.uuid4()), None, trigger="manual")
        if args is not None or kwargs is not None:
            message = Message(
                message.name,
                message.task,
                message.task_id,
                list(message.args if args is None else args),
                dict(message.kwargs if kwargs is None else kwargs),
                message.options,
                None,
                "manual",
            )
        scheduling.insert_executions(
            session,
            [
                scheduling.NewExecution(
                    name, message.task_id, "manual", None, message.args, message.kwargs, now
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
            row_id = scheduling.execution_id(session, message.task_id)
            if row_id is not None:
                scheduling.fail_unpublished(session, [row_id], f"not published: {exc}", utcnow())
        raise ReconcilerError(
            f"could not send {name!r} to the broker ({exc}); check --broker-url / "
            f"RECONCILER_BROKER_URL and that the broker is running"
        ) from exc
    finally:
        publisher.close()
    with scheduling.transaction(database) as session:
        scheduling.mark_published(session, [message.task_id], utcnow())
    return Triggered(name, message.task_id, now)
