"""Executions whose secret references cannot be resolved where they are published: failed
with the reason (which variables, which task) instead of sent, so beat carries on with
the others and ``reconcile trigger`` says why (docs/task-files.md, "Secrets stay out of git")."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from reconciler.core.secretref import refusal
from reconciler.store import scheduling

log = logging.getLogger("reconciler.beat")


class Outgoing(Protocol):
    """A message about to be sent (``reconciler.beat.ticker.Message``)."""

    @property
    def name(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def args(self) -> list[Any]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=Outgoing)


def publishable(
    session: Any, messages: Sequence[M], now: dt.datetime, *, warn: bool = True
) -> list[M]:
    """The messages that can be sent from this process; the others' pending execution
    rows (in ``session``) are failed with the reason, and logged when ``warn``."""
    refused = {}
    for message in messages:
        reason = refusal(message.name, message.args, message.kwargs)
        if reason is not None:
            refused[message.task_id] = reason
    if not refused:
        return list(messages)
    for task_id, reason in refused.items():
        row_id = scheduling.execution_id(session, task_id)
        if row_id is not None:
            scheduling.fail_unpublished(session, [row_id], reason, now)
        if warn:
            log.warning("beat: execution %s %s", task_id, reason)
    return [message for message in messages if message.task_id not in refused]
