"""A beat's background loop (the alert notifier, the pruner): a daemon thread of its own
that runs one step at a time until stopped, and logs a failing step once until one works."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from reconciler.store import stall
from reconciler.store.database import first_line

log = logging.getLogger("reconciler.beat")


class Background:
    """``start`` runs ``_run`` on a daemon thread; ``stop`` ends the loop and joins it."""

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError

    def _step_failed(self, exc: Exception) -> None:
        """Called on each failed step (after it is logged, the first of a row)."""

    def _loop(
        self,
        step: Callable[[], None],
        *,
        first: float,
        every: Callable[[], float],
        failure: str,
        recovery: str | None = None,
    ) -> None:
        """Run ``step`` ``first`` seconds from now, then every ``every()`` seconds, until
        stopped; a failure is logged as ``beat: {failure} (retrying)`` once in a row."""
        wait = first
        while not self._stop.wait(wait):
            wait = every()
            try:
                step()
                if self._failing and recovery is not None:
                    log.warning("beat: %s", recovery)
                self._failing = False
            except Exception as exc:
                if self._stop.is_set() or stall.WATCHDOG.cutoff != math.inf:
                    return  # beat is stopping: its database waits were cut off
                if not self._failing:
                    log.error("beat: %s (retrying): %s", failure, first_line(exc))
                self._step_failed(exc)
                self._failing = True
