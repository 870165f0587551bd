"""Execution rows written before their message is sent: a new one, as the outbox inserts
it, and one whose message was never confirmed sent, as a lease takeover returns it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NewExecution:
    """A ``pending`` execution row, written before its message is published."""

    task_name: str
    celery_task_id: str
    trigger: str
    scheduled_for: dt.datetime | None
    args: list[Any]
    kwargs: dict[str, Any]
    queued_at: dt.datetime


@dataclass(frozen=True)
class Unpublished(NewExecution):
    """A claimed execution whose message was never confirmed sent (its beat died, or the
    broker failed)."""

    id: int
