"""Workers seen from outside: is the broker reachable, which workers answer, what they run.

``reconciler.ops.doctor`` asks these questions; they keep Celery's control API in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery

CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class WorkersSeen:
    """The workers that answered, and the task names each registers."""

    can_ask: bool  # False: the broker has no broadcast (the embedded SQLite broker)
    answered: tuple[str, ...] = ()
    registered: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(self.answered)

    @property
    def all_registered(self) -> frozenset[str]:
        return frozenset().union(*self.registered.values()) if self.registered else frozenset()


def broker_error(app: Celery, url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when the broker at ``url`` accepts a connection, else why it does not."""
    try:
        with app.connection_for_write(url) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # any transport error is the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def ask_workers(app: Celery, url: str, timeout: float = 1.0) -> WorkersSeen:
    """Ask every worker what it registers (``celery inspect registered``)."""
    with app.connection_for_write(url) as connection:
        exchange_types = connection.transport.implements.get("exchange_type", frozenset())
    if "fanout" not in exchange_types:
        return WorkersSeen(can_ask=False)
    probe = _probe(app, url)
    with probe.connection_for_write() as connection:
        # One broadcast: every live worker answers ``registered`` (an empty list when it
        # has no tasks), so it is the ping and the task list at once.
        registered: dict[str, Any] = (
            probe.control.inspect(timeout=timeout, connection=connection).registered() or {}
        )
    answered = registered
    return WorkersSeen(
        can_ask=True,
        answered=tuple(sorted(answered)),
        registered={
            worker: frozenset(_task_name(entry) for entry in tasks or [])
            for worker, tasks in registered.items()
        },
    )


def active_queues(app: Celery, url: str, timeout: float = 1.0) -> dict[str, frozenset[str]]:
    """The queues each answering worker consumes (``celery inspect active_queues``)."""
    probe = _probe(app, url)
    with probe.connection_for_write() as connection:
        answers: dict[str, Any] = (
            probe.control.inspect(timeout=timeout, connection=connection).active_queues() or {}
        )
    return {
        worker: frozenset(str(queue["name"]) for queue in queues or [] if _named(queue))
        for worker, queues in answers.items()
    }


def _named(queue: Any) -> bool:
    return isinstance(queue, dict) and "name" in queue


_PROBES: dict[tuple[int, str], Celery] = {}


def _probe(app: Celery, url: str) -> Celery:
    """An app that broadcasts to ``url``, one per process and URL.

    Broadcasts go through an app's own producer pool, i.e. to its configured broker, so
    the user's app cannot be pointed at another URL per call; and a fresh app per call
    loses replies to the calls after the first (each reply queue outlives its app).
    """
    key = (id(app), url)
    if key not in _PROBES:
        probe = Celery(app.main, broker=url, set_as_current=False)
        probe.conf.update(
            control_exchange=app.conf.control_exchange,
            broker_transport_options=app.conf.broker_transport_options,
        )
        _PROBES[key] = probe
    return _PROBES[key]


def _task_name(entry: str) -> str:
    # ``registered`` lists "name [rate_limit=...]" when a task has options set.
    return entry.split(" ", 1)[0]
