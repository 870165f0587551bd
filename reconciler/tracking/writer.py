"""The background writer: one thread per process that takes the steps signal handlers
queue and upserts them in batches, retrying while the database is away, so a slow or
absent database never slows down or fails a task (docs/design/tracking-writes.md)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from reconciler.store.executions import ExecutionUpdate, apply_updates, coalesced
from reconciler.tracking.catalog import Catalog

logger = logging.getLogger("reconciler.tracking")

BATCH_SIZE = 500
LINGER = 0.1  # seconds the writer waits to gather a batch after the first step
RETRY_FOR = 30.0  # seconds one batch is retried while the database is away, then dropped


@dataclass(frozen=True)
class Step:
    """What a signal saw: an ``ExecutionUpdate`` still missing its managed task's name."""

    celery_name: str
    update: ExecutionUpdate
    published: bool = False  # a publish outside the reconciler: needs a live task


class Writer:
    """Queues steps from signal handlers and upserts them in batches from one thread.

    ``clock`` (monotonic seconds) and ``sleep`` pace the retries and the catalog's
    re-reads; tests may pass their own.
    """

    def __init__(
        self,
        database_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.database_url = database_url
        self._clock = clock
        self._sleep = sleep
        self._queue: queue.SimpleQueue[Step | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._urgent = threading.Event()  # a flush waits: stop lingering
        self._database: Any = None
        self._catalog = Catalog(clock=clock)
        self._failing = False

    def put(self, step: Step) -> None:
        self.start()
        self._queue.put(step)

    def start(self) -> None:
        """Start the thread (it connects and reads the task catalog before anything else)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="reconciler-tracking", daemon=True
                    )
                    self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or given up); False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        self._urgent.set()
        return done.wait(timeout)

    def _run(self) -> None:
        try:
            if self._missing_sqlite_file() is not None:
                raise FileNotFoundError(self.database_url)
            with self._open().begin() as session:
                self._catalog.refresh(session, force=True)
        except Exception as exc:  # _write reports and retries; here it is only a head start
            logger.debug("execution tracking: database not ready yet: %s", exc)
        backlog = False
        while True:
            items: list[Step | threading.Event] = [self._queue.get()]
            # Linger a moment for more: one transaction for many steps costs far less
            # than one each, and a fast task's start and finish then merge into one write.
            # Waiting on an event (set by flush), not on the queue: a queue wait would
            # wake this thread, and take the GIL from the task, at every step queued.
            if not backlog and not isinstance(items[0], threading.Event):
                self._urgent.wait(LINGER)
            self._urgent.clear()
            while len(items) < BATCH_SIZE and not isinstance(items[-1], threading.Event):
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            backlog = len(items) >= BATCH_SIZE
            steps = [item for item in items if isinstance(item, Step)]
            if steps:
                self._write(steps)
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()

    def _open(self) -> Any:
        if self._database is None:
            # Not ``Database.open``: a worker never migrates, so it skips importing alembic.
            from reconciler.store.database import make_engine, session_factory
            from reconciler.store.deadlines import TRACKING

            extra: dict[str, Any] = {}
            if not self.database_url.startswith("sqlite"):
                # Commits return before their WAL reaches the disk (the queue dies with the
                # worker anyway; docs/design/tracking-writes.md), set once per connection.
                extra = {
                    "pool_size": 1,
                    "max_overflow": 1,
                    "connect_args": {"options": "-c synchronous_commit=off"},
                }
            engine = make_engine(self.database_url, deadlines=TRACKING, **extra)
            self._database = session_factory(engine)
        return self._database

    def _missing_sqlite_file(self) -> str | None:
        """An embedded database that was never created: there is nothing to record into.

        Checked so that a process which merely publishes (a test, a script) in another
        directory does not create ``.reconciler/state.db`` there.
        """
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix) :].split("?", 1)[0]
        if path in ("", ":memory:") or os.path.exists(path):
            return None
        return path

    def _write(self, steps: list[Step]) -> None:
        missing = self._missing_sqlite_file()
        if missing is not None:
            if not self._failing:
                logger.warning(
                    "execution tracking records nothing: the database %s does not exist "
                    "(set RECONCILER_DATABASE_URL, or run any reconcile command to create it)",
                    missing,
                )
                self._failing = True
            return
        give_up_at = self._clock() + RETRY_FOR
        delay = 0.2
        while True:
            try:
                with self._open().begin() as session:
                    updates = self._resolve(session, steps)
                    if updates:
                        apply_updates(session, updates)
            except Exception as exc:
                if not self._failing:
                    logger.warning(
                        "execution tracking cannot write to the database (%s); "
                        "retrying for up to %.0f s",
                        exc,
                        RETRY_FOR,
                    )
                    self._failing = True
                if self._clock() + delay > give_up_at:
                    logger.error(
                        "execution tracking dropped %d step(s): the database stayed away",
                        len(steps),
                    )
                    return
                self._sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._failing:
                logger.warning("execution tracking writes to the database again")
                self._failing = False
            return

    def _resolve(self, session: Any, steps: list[Step]) -> list[ExecutionUpdate]:
        self._catalog.refresh(session)
        # Steps a final step of the batch makes moot are dropped before they are resolved.
        kept = {id(update) for update in coalesced([step.update for step in steps])}
        updates = []
        for step in steps:
            if id(step.update) not in kept:
                continue
            update = step.update
            name = self._catalog.resolve(
                session, step.celery_name, update.args, update.kwargs, live=step.published
            )
            if name is not None:
                updates.append(replace(update, task_name=name))
        return updates
