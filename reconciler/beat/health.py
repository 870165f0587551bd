"""What one beat reports about itself: counters since start, and the up/down state of the
database and the broker, logged once per change (never once per tick)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("reconciler.beat")


@dataclass
class TickStats:
    """Counters since start, for logs and the benchmark."""

    ticks: int = 0
    fired: int = 0
    missed: int = 0
    skipped: int = 0
    calendar_skipped: int = 0
    recovered: int = 0
    failed_unpublished: int = 0
    lease_lost: int = 0
    """Claimed executions not sent because their lease had lapsed (left to recovery)."""


@dataclass
class Health:
    """Up/down of one dependency, logged once per change (never once per tick)."""

    what: str
    up: bool | None = None

    def ok(self) -> None:
        if self.up is False:
            log.warning("beat: %s is back", self.what)
        self.up = True

    def fail(self, reason: str) -> None:
        if self.up is not False:
            log.error("beat: %s unavailable, still ticking: %s", self.what, reason)
        self.up = False
