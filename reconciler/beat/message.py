"""The seam between the tick and the broker: the message for one execution, built from its
task's spec, and the ``Publisher`` the tick hands messages to (docs/beat.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.core.spec import TaskSpec
from reconciler.vocabulary import Trigger


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Message:
    """One execution to send: the Celery task, its arguments and options, and its id."""

    name: str
    task: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    scheduled_for: dt.datetime | None
    trigger: str = Trigger.SCHEDULE


def message_for(
    spec: TaskSpec,
    task_id: str,
    scheduled_for: dt.datetime | None,
    trigger: str = Trigger.SCHEDULE,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Message:
    """The message for ``spec``; ``args`` / ``kwargs`` replace the spec's own when given."""
    return Message(
        name=spec.name,
        task=spec.task,
        task_id=task_id,
        args=list(spec.args if args is None else args),
        kwargs=dict(spec.kwargs if kwargs is None else kwargs),
        options=spec.options.apply_async_kwargs(),
        scheduled_for=scheduled_for,
        trigger=trigger,
    )


class PublishFailed(Exception):
    """The broker failed part-way; ``sent`` holds the ids it took before that."""

    def __init__(self, message: str, sent: Sequence[str]) -> None:
        super().__init__(message)
        self.sent = list(sent)


class Publisher(Protocol):
    """Where messages go: ``reconciler.beat.publisher.CeleryPublisher``, or a fake in tests."""

    def publish(self, messages: Sequence[Message]) -> list[str]:
        """Send in order; return the ids sent; raise ``PublishFailed`` if the broker fails."""
        ...

    def reachable(self) -> bool:
        """Whether the broker answers now (asked while it is known to be down)."""
        ...
