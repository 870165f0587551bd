"""Sending executions to the broker: the Celery side of the Beat tick and of manual runs.

``CeleryPublisher`` sends a batch of messages over one producer connection, by task
name (beat never imports the user's task modules). Its callers write each execution row
before the message leaves, so a worker always finds its row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.app.routes import MapRoute

from reconciler.beat.message import Message, PublishFailed
from reconciler.core.redact import redacted_repr
from reconciler.core.secretref import resolve
from reconciler.vocabulary import Header

log = logging.getLogger("reconciler.beat")

CONNECT_TIMEOUT = 2.0
IO_TIMEOUT = 3.0
"""A broker that takes longer than this to take or answer one write fails the publish, so
a stalled broker is an outage like a refused one. ``reconciler.beat.sending.LEASE_MARGIN``
outlasts a connect plus one such wait."""
BATCH = 200
"""Messages per pipelined flush on transports that batch (Redis)."""
REPR_LIMIT = 1024


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
        # The trigger says the execution row exists already (tracking must not record it
        # as external); the slot (ISO 8601) is for consumers and measurements.
        headers = {
            Header.TRIGGER: message.trigger,
            Header.SLOT: message.scheduled_for.isoformat() if message.scheduled_for else None,
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
