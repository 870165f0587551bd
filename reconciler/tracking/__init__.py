"""Execution tracking: Celery signals in the user's app recorded in ``task_executions``.

``install(app)`` is the one call a Celery app makes (the demo app does). Signal handlers
only note what happened and queue it; a writer thread per process resolves which managed
task an execution belongs to and upserts batches through ``reconciler.store.executions``,
so a slow or absent database never slows down or fails a task.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import traceback as traceback_module
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from celery import Celery, signals, states
from celery.app.trace import build_tracer
from celery.exceptions import Ignore

from reconciler.settings import DEFAULT_DATABASE_URL
from reconciler.store.deliveries import (
    CLAIMED,
    DUPLICATE,
    UNAVAILABLE,
    Claim,
    Delivery,
    DeliveryClaims,
)
from reconciler.store.executions import (
    FAILURE,
    PENDING,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    ExecutionUpdate,
    ManagedTask,
    apply_updates,
    change_seq,
    managed_tasks,
    pick_by_arguments,
    relax_commit,
)

logger = logging.getLogger("reconciler.tracking")

PUBLISHED_HEADER = "reconciler_trigger"
"""A message with this header already has its row (its publisher wrote it first)."""

RESULT_LIMIT = 64 * 1024
"""Results, tracebacks and errors above this many bytes are cut, with a marker saying so."""

DEFAULT_LOST_AFTER = 3600.0
"""Seconds a started execution without a time limit may run before the reaper calls it lost."""

DEADLINE_GRACE = 30.0
"""Added to a time limit: the worker itself reports a hard time limit within that time."""

BATCH_SIZE = 500
LINGER = 0.1  # seconds the writer waits to gather a batch after the first step
CATALOG_MAX_AGE = 30.0  # re-read the managed tasks at least this often
CATALOG_RECHECK = 0.2  # the change marker (did any task change?) is read at most this often
RETRY_FOR = 30.0  # seconds one batch is retried while the database is away, then dropped


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- what gets stored -------------------------------------------------------------------


def _cut(text: str, limit: int = RESULT_LIMIT) -> str:
    size = len(text.encode("utf-8", "replace"))
    if size <= limit:
        return text
    head = text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
    return f"{head}… [truncated: {size} bytes, {limit} kept]"


def encode_result(value: Any) -> Any:
    """The result as stored: itself when it is JSON, else its repr; cut to 64 KiB."""
    if value is None or isinstance(value, (bool, int)):
        return value
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return _cut(_safe_repr(value))
    if len(text) <= RESULT_LIMIT // 4 or len(text.encode("utf-8")) <= RESULT_LIMIT:
        return value
    return _cut(text)


_SCALARS = (str, int, bool, type(None))


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON as it is (the common case), checked without serialising it."""
    if isinstance(value, _SCALARS):
        return True
    if depth > 4:
        return False
    if isinstance(value, list):
        return all(_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def json_safe(value: Any) -> Any:
    """Arguments as stored: unchanged when JSON, else each odd value as its repr."""
    if _plain(value):
        return value
    try:
        return json.loads(json.dumps(value, default=_safe_repr, allow_nan=False))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return _safe_repr(value)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not lose the record
        return f"<unrepresentable {type(value).__name__}>"


def describe_error(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    message = str(exc)
    name = type(exc).__name__
    return _cut(f"{name}: {message}" if message else name, 4096)


def _traceback_text(einfo: Any, exc: BaseException | None) -> str | None:
    text = getattr(einfo, "traceback", None)
    if not text and exc is not None and exc.__traceback__ is not None:
        text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
    return _cut(text) if text else None


# --- which managed task an execution belongs to -----------------------------------------


@dataclass
class Catalog:
    """The task rows by Celery task name, re-read when the change marker moves."""

    by_celery: dict[str, list[ManagedTask]] = field(default_factory=dict)
    picked: dict[str, str | None] = field(default_factory=dict)  # among several, by arguments
    seq: int | None = None
    loaded_at: float = 0.0
    checked_at: float = 0.0

    def refresh(self, session: Any, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self.seq is not None and now - self.loaded_at < CATALOG_MAX_AGE:
            if now - self.checked_at < CATALOG_RECHECK:
                return
            self.checked_at = now
            if change_seq(session) == self.seq:
                return
        seq, tasks = managed_tasks(session)
        by_celery: dict[str, list[ManagedTask]] = {}
        for task in tasks:
            by_celery.setdefault(task.celery_name, []).append(task)
        self.by_celery, self.seq, self.loaded_at, self.checked_at = by_celery, seq, now, now
        self.picked = {}

    def resolve(
        self, session: Any, celery_name: str, args: list[Any], kwargs: dict[str, Any], live: bool
    ) -> str | None:
        """The managed task's name for an execution of ``celery_name``, or None if unmanaged.

        Several tasks may share one Celery task: the one defined with the same arguments
        wins, else the first by name. Worker steps also match deleted tasks, whose
        executions in flight still finish in their history.
        """
        candidates = self.by_celery.get(celery_name)
        if candidates is None:
            self.refresh(session)
            candidates = self.by_celery.get(celery_name, [])
        alive = [task.name for task in candidates if task.live]
        names = alive or ([] if live else [task.name for task in candidates])
        if len(names) > 1:
            key = json.dumps([celery_name, names, args, kwargs], sort_keys=True, default=repr)
            if key not in self.picked:
                if len(self.picked) > 10_000:  # arguments vary without end: stay bounded
                    self.picked.clear()
                self.picked[key] = pick_by_arguments(session, names, args, kwargs)
            return self.picked[key] or names[0]
        return names[0] if names else None


@dataclass(frozen=True)
class Step:
    """What a signal saw: an ``ExecutionUpdate`` still missing its managed task's name."""

    celery_name: str
    update: ExecutionUpdate
    published: bool = False  # a publish outside the reconciler: needs a live task


# --- the writer thread ------------------------------------------------------------------


class Writer:
    """Queues steps from signal handlers and upserts them in batches from one thread."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._queue: queue.SimpleQueue[Step | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._urgent = threading.Event()  # a flush waits: stop lingering
        self._database: Any = None
        self._catalog = Catalog()
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
            from reconciler.store.db import make_engine, session_factory
            from reconciler.store.deadlines import TRACKING

            extra: dict[str, Any] = {}
            if not self.database_url.startswith("sqlite"):
                extra = {"pool_size": 1, "max_overflow": 1}
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
        give_up_at = time.monotonic() + RETRY_FOR
        delay = 0.2
        while True:
            try:
                with self._open().begin() as session:
                    updates = self._resolve(session, steps)
                    if updates:
                        relax_commit(session)
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
                if time.monotonic() + delay > give_up_at:
                    logger.error(
                        "execution tracking dropped %d step(s): the database stayed away",
                        len(steps),
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._failing:
                logger.warning("execution tracking writes to the database again")
                self._failing = False
            return

    def _resolve(self, session: Any, steps: list[Step]) -> list[ExecutionUpdate]:
        self._catalog.refresh(session)
        updates = []
        for step in steps:
            update = step.update
            name = self._catalog.resolve(
                session, step.celery_name, update.args, update.kwargs, live=step.published
            )
            if name is not None:
                updates.append(replace(update, task_name=name))
        return updates


# --- the signal handlers ----------------------------------------------------------------


@dataclass
class Tracker:
    """Tracking for one Celery app in this process: its settings, writer and running tasks."""

    app: Celery
    database_url_override: str | None = None
    _writer: Writer | None = None
    _claims: DeliveryClaims | None = None
    _running: dict[str, tuple[dt.datetime, float]] = field(default_factory=dict)
    _conf: tuple[str, float | None, float] | None = None  # url, app time limit, lost-after
    _unclaimed: int | None = None  # deliveries run unclaimed since claims became unavailable

    def after_fork(self) -> None:
        """A forked pool process starts with its own writer and claims, nothing running."""
        # Kept, never used nor collected: freeing the parent's connections here would
        # close their sockets, which the parent process is still using.
        _inherited.extend(item for item in (self._writer, self._claims) if item is not None)
        self._writer = None
        self._claims = None
        self._running = {}
        self._unclaimed = None

    def _settings(self) -> tuple[str, float | None, float]:
        # Read once: Celery's settings lookups cost more than everything else per task.
        if self._conf is None:
            conf = self.app.conf
            limit = conf.task_time_limit or conf.task_soft_time_limit
            url = self.database_url_override or database_url_for(self.app)
            self._conf = (url, float(limit) if limit else None, lost_after_for(self.app))
        return self._conf

    @property
    def writer(self) -> Writer:
        writer = self._writer
        url = self.database_url_override or os.environ.get("RECONCILER_DATABASE_URL")
        url = url or self._settings()[0]
        if writer is None:
            writer = self._writer = Writer(url)
        elif writer.database_url != url:  # reconfigured (tests, or a re-read setting)
            writer.flush()
            writer = self._writer = Writer(url)
        return writer

    @property
    def claims(self) -> DeliveryClaims:
        url = self.writer.database_url
        claims = self._claims
        if claims is None or claims.database_url != url:
            if claims is not None:
                claims.close()
            claims = self._claims = DeliveryClaims(url)
        return claims

    def record(self, celery_name: str, update: ExecutionUpdate, published: bool = False) -> None:
        try:
            self.writer.put(Step(celery_name, update, published))
        except Exception:  # tracking never fails a task
            logger.exception("execution tracking could not queue a step")

    def deadline(self, task: Any, started_at: dt.datetime) -> dt.datetime:
        hard, soft = (getattr(task.request, "timelimit", None) or (None, None))[:2]
        _, app_limit, lost_after = self._settings()
        limit = (
            hard
            or soft
            or getattr(task, "time_limit", None)
            or getattr(task, "soft_time_limit", None)
            or app_limit
        )
        seconds = float(limit) + DEADLINE_GRACE if limit else lost_after
        return started_at + dt.timedelta(seconds=seconds)

    # before_task_publish, in whatever process publishes
    def on_publish(self, sender: Any, headers: Any, body: Any, **_: Any) -> None:
        if _process.in_beat:
            return  # beat's own publishes: the scheduler wrote their rows when it claimed them
        headers = headers or {}
        if PUBLISHED_HEADER in headers or headers.get("retries"):
            return  # our publisher wrote the row; a retry continues an existing row
        task_id, name = headers.get("id"), headers.get("task") or sender
        if not task_id or not isinstance(name, str) or name.startswith("celery."):
            return
        args: Any = []
        kwargs: Any = {}
        if isinstance(body, (tuple, list)) and len(body) >= 2:
            args, kwargs = body[0], body[1]
        update = ExecutionUpdate(
            celery_task_id=str(task_id),
            status=PENDING,
            at=_now(),
            args=json_safe(list(args or [])),
            kwargs=json_safe(dict(kwargs or {})),
        )
        self.record(name, update, published=True)

    def _base(self, task: Any, task_id: str, status: str, **values: Any) -> ExecutionUpdate:
        request = task.request
        return ExecutionUpdate(
            celery_task_id=task_id,
            status=status,
            at=_now(),
            retries=int(getattr(request, "retries", 0) or 0),
            args=json_safe(list(getattr(request, "args", None) or [])),
            kwargs=json_safe(dict(getattr(request, "kwargs", None) or {})),
            worker=getattr(request, "hostname", None),
            **values,
        )

    def _finish(self, task: Any, task_id: str, status: str, **values: Any) -> ExecutionUpdate:
        started = self._running.get(task_id)
        if started is not None:
            values.setdefault("started_at", started[0])
            values["duration_ms"] = round((time.monotonic() - started[1]) * 1000)
        return self._base(task, task_id, status, **values)

    def on_prerun(self, sender: Any, task_id: str, task: Any, **_: Any) -> None:
        if _claimed_before_start(task):
            return  # the claim records the start, if this delivery may run
        self._started(task, task_id, _now(), time.monotonic())

    def _started(self, task: Any, task_id: str, started_at: dt.datetime, clock: float) -> None:
        """Note a running delivery and queue its ``started`` step."""
        self._running[task_id] = (started_at, clock)
        deadline_at = self.deadline(task, started_at)
        update = self._base(task, task_id, STARTED, started_at=started_at, deadline_at=deadline_at)
        self.record(task.name, update)

    def on_postrun(self, sender: Any, task_id: str, state: Any = None, **_: Any) -> None:
        if state != states.IGNORED:  # a refused duplicate: the execution may run here still
            self._running.pop(task_id, None)

    # before_start, through the hook ``install`` gives each task class
    def claim(self, task: Any, task_id: str) -> None:
        """Claim the execution row for this delivery; ``Ignore`` if it ran elsewhere.

        Only deliveries of messages the reconciler published are claimed (their row
        exists); see docs/guarantees.md, "At the worker".
        """
        request = task.request
        if getattr(request, CLAIM_ATTRIBUTE, None) is not None:
            return  # claimed already, by a before_start further down the task's classes
        if not _published_here(request):
            return  # published outside the reconciler: recorded by on_prerun, unclaimed
        started_at, clock = _now(), time.monotonic()
        delivery = Delivery(
            celery_task_id=task_id,
            retries=int(getattr(request, "retries", 0) or 0),
            redelivered=_redelivered(request),
        )
        try:
            claim = self.claims.claim(delivery)
        except Exception as exc:  # tracking never fails a task: run it unclaimed
            logger.exception("execution tracking could not claim %s[%s]", task.name, task_id)
            claim = Claim(UNAVAILABLE, reason=describe_error(exc))
        setattr(request, CLAIM_ATTRIBUTE, claim.outcome)
        if claim.outcome == DUPLICATE:
            if claim.status is None:  # refused, but the count failed
                where = f"started or ended elsewhere (not counted: {claim.reason})"
            elif claim.status == STARTED:
                where = "is running elsewhere"
            else:
                where = f"ended ({claim.status}) elsewhere"
            logger.warning(
                "duplicate delivery of %s[%s] not run: its execution %s", task.name, task_id, where
            )
            raise Ignore()
        if claim.outcome == CLAIMED:
            self._claims_answer()
        elif claim.outcome == UNAVAILABLE:
            self._ran_unclaimed(task.name, task_id, claim.reason)
        # The claim only marks the attempt: the start is recorded as any other's.
        self._started(task, task_id, started_at, clock)

    def _ran_unclaimed(self, name: str, task_id: str, reason: str | None) -> None:
        if self._unclaimed is None:
            self._unclaimed = 0
            logger.warning(
                "execution claims unavailable (%s): deliveries run unclaimed, at least once, "
                "until the database answers",
                reason,
            )
        self._unclaimed += 1
        logger.info("%s[%s] runs unclaimed: %s", name, task_id, reason)

    def _claims_answer(self) -> None:
        if self._unclaimed is not None:
            logger.warning(
                "execution claims work again (%d deliveries ran unclaimed meanwhile)",
                self._unclaimed,
            )
            self._unclaimed = None

    def on_success(self, sender: Any, result: Any, **_: Any) -> None:
        task_id = getattr(sender.request, "id", None)
        if task_id:
            update = self._finish(sender, task_id, SUCCESS, result=encode_result(result))
            self.record(sender.name, update)

    def on_failure(
        self,
        sender: Any,
        task_id: str,
        exception: BaseException | None = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        update = self._finish(
            sender,
            task_id,
            FAILURE,
            error=describe_error(exception),
            traceback=_traceback_text(einfo, exception),
        )
        self.record(sender.name, update)

    def on_retry(
        self, sender: Any, request: Any, reason: Any = None, einfo: Any = None, **_: Any
    ) -> None:
        cause = getattr(reason, "exc", None) or reason
        error = describe_error(cause) if isinstance(cause, BaseException) else str(cause or "")
        update = replace(
            self._finish(
                sender,
                request.id,
                RETRY,
                error=error or None,
                traceback=_traceback_text(einfo, None),
            ),
            retries=int(getattr(request, "retries", 0) or 0) + 1,
            started_at=None,
            duration_ms=None,
        )
        self.record(sender.name, update)

    def on_revoked(
        self,
        sender: Any,
        request: Any,
        terminated: bool = False,
        signum: Any = None,
        expired: bool = False,
        **_: Any,
    ) -> None:
        task_id = getattr(request, "id", None)
        if not task_id or sender is None:
            return
        if expired:
            reason = "revoked: expired before it ran"
        elif terminated:
            reason = f"revoked: terminated by signal {signum}" if signum else "revoked: terminated"
        else:
            reason = "revoked"
        update = self._finish(sender, task_id, REVOKED, error=reason)
        update = replace(
            update,
            retries=int(getattr(request, "retries", 0) or 0),
            worker=getattr(request, "hostname", None) or update.worker,
        )
        self.record(sender.name, update)

    def flush(self, timeout: float = 10.0) -> bool:
        writer = self._writer
        return True if writer is None else writer.flush(timeout)

    def close(self) -> None:
        self.flush()
        if self._claims is not None:
            self._claims.close()
            self._claims = None


_trackers: list[Tracker] = []
_inherited: list[Writer | DeliveryClaims] = []


def _after_fork_in_child() -> None:
    for tracker in _trackers:
        tracker.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class _Process:
    in_beat: bool = False
    connected: bool = False


_process = _Process()


def _on_beat_init(**_: Any) -> None:
    _process.in_beat = True


def _warm_up(**_: Any) -> None:
    """A worker (or pool process) connects before its first task, not during it."""
    try:
        for tracker in _trackers:
            tracker.writer.start()
            tracker.claims.start()
    except Exception:
        logger.exception("execution tracking could not start its writer")


def _for_task(sender: Any) -> Tracker | None:
    app = getattr(sender, "app", None)
    for tracker in _trackers:
        if tracker.app is app:
            return tracker
    return None


def _guarded(function: Callable[..., None]) -> Callable[..., None]:
    """A handler whose errors are logged: tracking must never fail the task or the publish."""

    def handler(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.exception("execution tracking failed in %s", function.__name__)

    handler.__name__ = function.__name__
    return handler


@_guarded
def _on_publish(sender: Any = None, **kwargs: Any) -> None:
    # The signal does not say which app publishes: the app that registers the task
    # name is taken, else the first installed (a producer may send by name only).
    if not _trackers:
        return
    name = (kwargs.get("headers") or {}).get("task") or sender
    tracker = next((t for t in _trackers if name in t.app.tasks), _trackers[0])
    tracker.on_publish(sender, **kwargs)


def _task_handler(method: str) -> Callable[..., None]:
    @_guarded
    def handler(sender: Any = None, **kwargs: Any) -> None:
        tracker = _for_task(sender if sender is not None else kwargs.get("task"))
        if tracker is not None:
            getattr(tracker, method)(sender, **kwargs)

    handler.__name__ = f"_on_{method}"
    return handler


# --- the claim hook on each task class --------------------------------------------------

CLAIM_ATTRIBUTE = "reconciler_claim"
"""Set on a task's request once its delivery was claimed (to the claim's outcome)."""

_HOOK_MARK = "_reconciler_claims"


def _redelivered(request: Any) -> bool:
    """The broker hands this message out again: the worker it went to did not ack it.

    AMQP brokers set the flag themselves; kombu's Redis transport sets it on messages it
    restores (visibility timeout, or a worker's unacked messages on shutdown).
    """
    info = getattr(request, "delivery_info", None) or {}
    return bool(info.get("redelivered") or getattr(request, "redelivered", False))


def _hooked(cls: type) -> bool:
    return bool(getattr(getattr(cls, "before_start", None), _HOOK_MARK, False))


def _published_here(request: Any) -> bool:
    """The reconciler published this message (beat or ``reconcile trigger``): its row exists.

    A worker sees the message's headers as the request's attributes; ``apply`` (eager
    runs) passes them in ``request.headers``.
    """
    if getattr(request, PUBLISHED_HEADER, None) is not None:
        return True
    headers = getattr(request, "headers", None)
    return isinstance(headers, dict) and headers.get(PUBLISHED_HEADER) is not None


def _claimed_before_start(task: Any) -> bool:
    """Whether the task's before_start claims this delivery (so it records the start)."""
    return _published_here(task.request) and _hooked(type(task))


def _with_claim(inherited: Callable[..., Any]) -> Callable[..., Any]:
    def before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> Any:
        tracker = _for_task(self)
        if tracker is not None:
            try:
                tracker.claim(self, task_id)
            except Ignore:
                raise
            except Exception:  # tracking never fails a task
                logger.exception("execution tracking failed to claim %s[%s]", self.name, task_id)
        return inherited(self, task_id, args, kwargs)

    setattr(before_start, _HOOK_MARK, True)
    return before_start


def hook_tasks(app: Celery, hostname: str | None = None) -> int:
    """Give each task class of ``app`` the claim (in ``before_start``, the hook Celery calls
    after ``task_prerun`` and before the task body, where ``Ignore`` is honoured); rebuild
    the tracers built before, which only look ``before_start`` up once. Returns how many."""
    if not app.finalized:
        return 0  # app.on_after_finalize calls again
    hooked = 0
    for name, task in list(app.tasks.items()):
        cls = type(task)
        if name.startswith("celery.") or _hooked(cls):
            continue
        cls.before_start = _with_claim(cls.before_start)  # type: ignore[method-assign]
        hooked += 1
        if task.__trace__ is not None:
            task.__trace__ = build_tracer(name, task, app.loader, hostname, app=app)
    return hooked


@_guarded
def _hook_on_finalize(sender: Any = None, **_: Any) -> None:
    if isinstance(sender, Celery) and any(t.app is sender for t in _trackers):
        hook_tasks(sender)


@_guarded
def _hook_in_worker(sender: Any = None, **_: Any) -> None:
    # worker_init (sender: the worker), worker_process_init (the host name),
    # worker_ready (the consumer): every task module is imported by then.
    hostname = sender if isinstance(sender, str) else getattr(sender, "hostname", None)
    for tracker in _trackers:
        hook_tasks(tracker.app, hostname)


_HANDLERS: list[tuple[Any, Callable[..., None]]] = [
    (signals.before_task_publish, _on_publish),
    (signals.task_prerun, _task_handler("on_prerun")),
    (signals.task_postrun, _task_handler("on_postrun")),
    (signals.task_success, _task_handler("on_success")),
    (signals.task_failure, _task_handler("on_failure")),
    (signals.task_retry, _task_handler("on_retry")),
    (signals.task_revoked, _task_handler("on_revoked")),
]


def flush(timeout: float = 10.0) -> bool:
    """Write out every step queued in this process (at shutdown, and in tests)."""
    return all(tracker.flush(timeout) for tracker in list(_trackers))


@_guarded
def _flush_on_exit(**_: Any) -> None:
    flush(5.0)


def database_url_for(app: Celery) -> str:
    """``RECONCILER_DATABASE_URL``, else the app's ``reconciler_database_url``, else the default."""
    return (
        os.environ.get("RECONCILER_DATABASE_URL")
        or app.conf.get("reconciler_database_url")
        or DEFAULT_DATABASE_URL
    )


def lost_after_for(app: Celery) -> float:
    value = os.environ.get("RECONCILER_LOST_AFTER") or app.conf.get("reconciler_lost_after")
    return float(value) if value else DEFAULT_LOST_AFTER


def uninstall(app: Celery) -> None:
    """Stop recording this app's executions (after writing what is queued)."""
    for tracker in list(_trackers):
        if tracker.app is app:
            tracker.close()
            _trackers.remove(tracker)


def install(app: Celery, *, database_url: str | None = None) -> Tracker:
    """Record every execution of this app's managed tasks; idempotent.

    The database is ``database_url``, else ``RECONCILER_DATABASE_URL``, else the app's
    ``reconciler_database_url`` setting, else the embedded default; it is opened
    lazily, in each process that has something to record.
    """
    for tracker in _trackers:
        if tracker.app is app:
            return tracker
    tracker = Tracker(app, database_url)
    _trackers.append(tracker)
    # Deliveries the reconciler published are claimed before they run: every task class
    # gets the hook once the app's tasks are known, before a worker builds its tracers.
    app.on_after_finalize.connect(_hook_on_finalize, weak=False)
    hook_tasks(app)
    if not _process.connected:
        _process.connected = True
        for signal, handler in _HANDLERS:
            signal.connect(
                handler, weak=False, dispatch_uid=f"reconciler.tracking{handler.__name__}"
            )
        for signal in (signals.worker_process_init, signals.worker_ready):
            signal.connect(_warm_up, weak=False, dispatch_uid="reconciler.tracking.warm")
        for signal in (signals.worker_init, signals.worker_process_init, signals.worker_ready):
            signal.connect(_hook_in_worker, weak=False, dispatch_uid="reconciler.tracking.hook")
        signals.beat_init.connect(
            _on_beat_init, weak=False, dispatch_uid="reconciler.tracking.beat"
        )
        for signal in (signals.worker_process_shutdown, signals.worker_shutdown):
            signal.connect(_flush_on_exit, weak=False, dispatch_uid="reconciler.tracking.flush")
        atexit.register(flush, 5.0)
    return tracker
