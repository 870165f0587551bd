"""What every doctor check is made of: its result (``Check``), what the checks found so
far (``Context``), their thresholds and the ways they word times and lists."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reconciler.settings import Settings
from reconciler.vocabulary import REDBEAT_PREFIX

Status = Literal["ok", "warn", "fail", "skip"]


MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}


GIT_PULL_FAILS = 3
"""``watch --git-pull`` failures in a row that fail the ``watch`` check (fewer warn)."""


OVERDUE_AFTER = dt.timedelta(seconds=60)
"""A next run this far in the past means nothing is firing it."""


RECENT_WORKERS = dt.timedelta(minutes=10)


PENDING_AFTER = dt.timedelta(minutes=5)
"""An execution pending this long is in a queue nobody consumes, or consumers too slow."""


DETAILS_SHOWN = 20


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def masked(url: str) -> str:
    """A URL with its password hidden."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def ago(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def listed(items: list[str]) -> list[str]:
    if len(items) <= DETAILS_SHOWN:
        return items
    return [*items[:DETAILS_SHOWN], f"... and {len(items) - DETAILS_SHOWN} more"]


@dataclass
class Context:
    """What the checks found so far, for the checks after them."""

    settings: Settings
    now: dt.datetime
    timeout: float
    database: Any = None
    app: Any = None
    broker_ok: bool = False
    workers: Any = None
    tasks: list[Any] = field(default_factory=list)
    beats_expected: int | None = None
    pending_after: dt.timedelta = field(default_factory=lambda: PENDING_AFTER)
    # The scheduler tasks were imported from (``--old-scheduler``) and RedBeat's prefix.
    old_scheduler: str | None = None
    key_prefix: str = REDBEAT_PREFIX
