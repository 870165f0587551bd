"""``reconciler.beat:DatabaseScheduler``: Celery Beat firing what the database holds.

``celery -A APP beat -S reconciler.beat:DatabaseScheduler`` (and ``reconcile up``) run
it. All scheduling state lives in the database (docs/beat.md); this class adapts
``reconciler.beat.ticker.Ticker`` to Celery's ``Scheduler`` interface and sends with
``reconciler.beat.publisher.CeleryPublisher``, by task name, so the user's task modules are
never imported here.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.beat import Scheduler

from reconciler.beat.notifier import Notifier
from reconciler.beat.pruning import PruneThread, prune_every
from reconciler.beat.publisher import CeleryPublisher
from reconciler.beat.sending import LOOKAHEAD, MAX_LOOKAHEAD
from reconciler.beat.ticker import MAX_SLEEP, Ticker
from reconciler.core.firing import DEFAULT_GRACE
from reconciler.errors import ConfigError
from reconciler.settings import process_name, resolve_database_url, resolve_history_keep
from reconciler.store import scheduling, stall
from reconciler.store.database import Database
from reconciler.store.deadlines import BEAT

log = logging.getLogger("reconciler.beat")

FREEZE_STEP = 2000
REAP_EVERY = dt.timedelta(seconds=15)
"""How often beat marks executions of dead workers as lost (``executions.reap_lost``)."""
LAST_WORDS = 0.5
"""Seconds a stopping beat gives the removal of its heartbeat, even after SIGTERM."""


def database_url(app: Celery) -> str:
    """``RECONCILER_DATABASE_URL``, else the app's ``reconciler_database_url``, else the default."""
    return resolve_database_url(configured=app.conf.get("reconciler_database_url"))


def _seconds(
    app: Celery,
    names: tuple[str, str],
    default: dt.timedelta,
    allowed: Callable[[float], bool],
    rule: str,
) -> dt.timedelta:
    """A duration from the environment variable, else the app setting (``names``), else
    ``default``; anything else than a number of seconds ``allowed`` stops beat with ``rule``."""
    variable, setting = names
    raw = os.environ.get(variable) or app.conf.get(setting)
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {raw!r} is not a number of seconds") from exc
    if not allowed(seconds):
        raise ConfigError(f"{variable}: {rule}, got {raw!r}")
    return dt.timedelta(seconds=seconds)


def catchup_grace(app: Celery) -> dt.timedelta:
    """How late a slot may fire before it counts as missed (``RECONCILER_BEAT_GRACE``, s)."""
    names = ("RECONCILER_BEAT_GRACE", "reconciler_beat_grace")
    return _seconds(app, names, DEFAULT_GRACE, lambda s: s > 0, "must be above 0 seconds")


def lookahead(app: Celery) -> dt.timedelta:
    """How far ahead beat claims slots (``RECONCILER_BEAT_LOOKAHEAD``, s; 0 turns it off)."""
    names = ("RECONCILER_BEAT_LOOKAHEAD", "reconciler_beat_lookahead")
    most = MAX_LOOKAHEAD.total_seconds()
    rule = f"must be 0 to {most:g} seconds"
    return _seconds(app, names, LOOKAHEAD, lambda s: 0 <= s <= most, rule)


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """A Celery Beat scheduler whose schedule, claims and history are in SQL.

    Several of them may run against one database: each slot is claimed there, under a
    lease, before it is published, so none runs twice (docs/guarantees.md).
    """

    #: Beat's own loop never sleeps longer than this between ticks.
    max_interval = MAX_SLEEP * 4

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        self._ticker: Ticker | None = None
        self._database: Database | None = None
        self._publisher: CeleryPublisher | None = None
        self._notifier: Notifier | None = None
        self._pruner: PruneThread | None = None
        self._url = database_url(app)
        self._grace = catchup_grace(app)  # a bad setting stops beat at start, with the reason
        self._lookahead = lookahead(app)
        self._prune_every = prune_every()
        self._history_keep = resolve_history_keep()
        self._name = process_name("RECONCILER_BEAT_NAME")
        self._failing = False
        self._frozen_at = 0
        super().__init__(app, *args, **kwargs)

    # --- Celery's Scheduler interface ---------------------------------------------------

    def setup_schedule(self) -> None:
        """Open the database (upgrading its schema) and start the ticker.

        A database that is not there yet is not fatal: ``tick`` tries again every second.
        """
        if self._ticker is not None:
            return
        _stop_without_waiting()
        try:
            self._start()
        except Exception as exc:
            if not self._failing:
                log.error("beat: cannot start scheduling yet (retrying every second): %s", exc)
            self._failing = True

    def _start(self) -> None:
        # A server that does not answer holds a tick for seconds at most (docs/deadlines.md).
        self._database = Database.open(self._url, deadlines=BEAT)
        self._publisher = CeleryPublisher(self.app)
        ticker = Ticker(
            self._database,
            self._publisher,
            grace=self._grace,
            lookahead=self._lookahead,
            name=self._name,
            shield=deferred_stop,
        )
        database = self._database

        def reap(now: dt.datetime) -> None:
            from reconciler.store import executions

            with scheduling.transaction(database) as session:
                lost = executions.reap_lost(session, now)
            if lost:
                log.warning("beat: %d execution(s) of lost workers marked failed", lost)

        ticker.every(REAP_EVERY, reap)
        self._ticker = ticker
        # Alerts are evaluated and sent on a thread of their own: never in a tick.
        self._notifier = Notifier(database)
        self._notifier.start()
        # The history is pruned on a thread and connections of its own, never in a tick.
        if self._prune_every > 0:
            self._pruner = PruneThread(self._url, self._prune_every, self._history_keep)
            self._pruner.start()
        log.info(
            "beat: scheduling from %s as %s (name %r)",
            _masked(self._url),
            ticker.instance,
            self._name,
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One round of claims and publishes; returns the seconds until the next."""
        try:
            if self._ticker is None:
                self._start()
            assert self._ticker is not None
            delay = self._ticker.tick()
            self._settle_cache()
        except Exception:
            # Whatever goes wrong, beat keeps ticking; say so once, not every tick.
            if not self._failing:
                log.exception("beat: tick failed; retrying every second")
            self._failing = True
            return 1.0
        if self._failing:
            log.warning("beat: ticking again")
        self._failing = False
        return delay

    def _settle_cache(self) -> None:
        """Move the spec cache out of the cyclic garbage collector's reach as it grows.

        A full collection over a large cache pauses beat long enough to fire late
        (docs/design/beat-spec-cache.md); frozen specs are still freed by reference
        counting when a change replaces them. Freezes happen once per ``FREEZE_STEP``.
        """
        assert self._ticker is not None
        size = len(self._ticker.specs)
        if size - self._frozen_at >= FREEZE_STEP:
            gc.collect()
            gc.freeze()
            self._frozen_at = size

    def sync(self) -> None:
        """Nothing to write back: every claim is committed as it is made."""

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
        if self._pruner is not None:
            self._pruner.stop()
        if self._ticker is not None:
            # Not when the stop had to cut a database wait: what it sent could not be marked.
            try:
                with stall.last_words(self._lookahead.total_seconds() + LAST_WORDS):
                    self._ticker.drain(self._lookahead.total_seconds())
            except Exception as exc:
                log.warning("beat: messages held for their slot left to recovery: %s", exc)
            # A clean stop leaves no heartbeat behind (docs/beat.md, "Heartbeats and names").
            try:
                with stall.last_words(LAST_WORDS):
                    self._ticker.leave()
            except Exception as exc:
                log.warning("beat: heartbeat not removed (removed by another beat later): %s", exc)
        if self._publisher is not None:
            self._publisher.close()
        if self._database is not None:
            self._database.dispose()
        super().close()

    def get_schedule(self) -> dict[str, Any]:
        """The tasks this beat has fired, by name (not every task): schedule and message."""
        if self._ticker is None:
            return {}
        return {name: entry.summary() for name, entry in self._ticker.cached().items()}

    def set_schedule(self, schedule: Any) -> None:
        """The schedule comes from the database; ``beat_schedule`` entries are not used."""

    schedule = property(get_schedule, set_schedule)

    @property
    def info(self) -> str:
        return f"    . database -> {_masked(self._url)}"


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
SHIELD_GRACE = 1.0
"""Seconds a deferred stop lets a database write in the shield finish (it normally takes
milliseconds; a database that does not answer is given up on then)."""


def _stop_without_waiting() -> None:
    """Wrap Celery Beat's stop handlers so that a stop ends any database wait first: beat
    stops within a second or two even while the database does not answer."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(number)
        if callable(handler):
            signal.signal(number, stall.stopping(handler))


@contextmanager
def deferred_stop() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGQUIT until the block ends, then act on them.

    Celery Beat stops by raising ``SystemExit`` from its signal handler, wherever the
    main thread is; between a publish and the write of its ``published_at`` that would
    leave a sent message looking unsent, to be sent again by the next beat. Python runs
    signal handlers in the main thread only, so swapping the handlers defers the stop
    whichever thread the signal arrived on. A database wait in the block is ended after
    ``SHIELD_GRACE``, so a database that does not answer cannot hold the stop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, Any]] = []

    def hold(got: int, frame: Any) -> None:
        pending.append((got, frame))
        stall.cut_off(SHIELD_GRACE)

    previous = {number: signal.signal(number, hold) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for got, frame in pending:
            handler = previous[signal.Signals(got)]
            if callable(handler):
                handler(got, frame)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), got)


def _masked(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
