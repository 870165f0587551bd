"""Beat's pruner: on a thread of its own and its own database connections, every few
minutes it rolls up the daily statistics and removes the history past its retention
(docs/tracking.md, "Retention"), in short transactions with pauses between them, so
neither a tick nor a read of the history waits for it. Several beats run it; the
store's lease gives each transaction to one of them (``reconciler.store.retention``).
"""

from __future__ import annotations

import logging
import math
import os

from reconciler.beat.background import Background
from reconciler.errors import ConfigError
from reconciler.settings import resolve_history_keep
from reconciler.store.database import Database
from reconciler.store.deadlines import PRUNE
from reconciler.store.retention import Pruner, PruneReport

log = logging.getLogger("reconciler.beat")

DEFAULT_EVERY = 300.0
"""Seconds between passes (``RECONCILER_PRUNE_EVERY``; 0 turns this beat's pruning off)."""
BUDGET = 240.0
"""Seconds one pass may run; what is left waits for the next."""
FIRST_AFTER = 30.0
"""Seconds from beat's start to its first pass."""
PAUSE = 0.1
"""Seconds between two transactions of a pass."""


def prune_every() -> float:
    raw = os.environ.get("RECONCILER_PRUNE_EVERY", "").strip()
    if not raw:
        return DEFAULT_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = -1.0
    if every < 0 or not math.isfinite(every):
        raise ConfigError(f"RECONCILER_PRUNE_EVERY: {raw!r} is not a number of seconds (0: off)")
    return every


class PruneThread(Background):
    """Runs ``Pruner`` passes every ``every`` seconds until stopped."""

    def __init__(self, url: str, every: float, default_days: int | None = None) -> None:
        super().__init__("reconciler-prune")
        self.url = url
        self.every = every
        self.default_days = resolve_history_keep() if default_days is None else default_days
        self.last: PruneReport | None = None
        self._database: Database | None = None

    def _run(self) -> None:
        try:
            self._loop(
                self._prune,
                first=min(self.every, FIRST_AFTER),
                every=lambda: self.every,
                failure="history not pruned",
            )
        finally:
            if self._database is not None:
                self._database.dispose()

    def _prune(self) -> None:
        if self._database is None:
            self._database = Database.open(self.url, upgrade=False, deadlines=PRUNE)
        self.last = Pruner(self._database, self.default_days).run(
            budget=BUDGET, pause=PAUSE, stop=self._stop
        )
        if self.last.executions:
            log.info(
                "beat: pruned %d execution(s) of %d task(s)",
                self.last.executions,
                len(self.last.tasks),
            )
