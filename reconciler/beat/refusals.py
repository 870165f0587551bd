"""Executions whose secret references cannot be resolved where they are published: failed
with the reason (which variables, which task) instead of sent, so beat carries on with
the others and ``reconcile trigger`` says why (docs/task-files.md, "Secrets stay out of git")."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from reconciler.beat.message import Message
from reconciler.core.secretref import refusal
from reconciler.store import outbox

log = logging.getLogger("reconciler.beat")


def publishable(
    session: Any, messages: Sequence[Message], now: dt.datetime, *, warn: bool = True
) -> list[Message]:
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
        row_id = outbox.execution_id(session, task_id)
        if row_id is not None:
            outbox.fail_unpublished(session, [row_id], reason, now)
        if warn:
            log.warning("beat: execution %s %s", task_id, reason)
    return [message for message in messages if message.task_id not in refused]
