"""The bundled demo Celery app: the old system's example tasks under their old names.

See docs/demo.md.

``make run``, ``reconcile up`` and the end-to-end tests run ``reconciler.demo:app``; the
files in ``tasks.d/`` are written against it. Its broker is ``RECONCILER_BROKER_URL``,
by default an embedded SQLite broker under ``./.reconciler/``; it has no result backend.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

from celery import Celery, Task
from celery.utils.log import get_task_logger
from kombu.connection import Connection
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from reconciler import tracking
from reconciler.settings import resolve_broker_url

logger = get_task_logger(__name__)
broker_log = logging.getLogger("reconciler.broker")

_SQLITE_BROKER_PREFIXES = ("sqla+sqlite:///", "sqlalchemy+sqlite:///")

# How long one SQLite broker connection waits for another process's write lock before
# failing; beat, the worker and `reconcile trigger` all write to the same file.
SQLITE_BUSY_TIMEOUT_SECONDS = 30

RETRY_COUNTDOWN_SECONDS = 0.2
"""The delay before each retry that ``demo_dynamic_task(retries=N)`` asks for."""

SWEEP_EVERY = 5.0
"""Seconds between two removals of delivered messages by a consuming broker channel."""

SWEEP_BATCH = 1000
"""Delivered messages removed per statement; a full batch is followed by the next at once."""

LONG_RUNNING_STEP_SECONDS = 0.1
"""``long_running_task`` sleeps in steps this long, so a revoke or shutdown lands quickly."""


def sqlite_broker_path(url: str) -> Path | None:
    """The database file of an embedded SQLite broker URL, or None for any other broker."""
    for prefix in _SQLITE_BROKER_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if path in ("", ":memory:"):
                return None
            return Path(path)
    return None


def prepare_sqlite_broker(url: str) -> dict[str, Any]:
    """Create the directory of an SQLite broker file; return the transport options it needs.

    SQLite does not create missing directories, and kombu opens the file on the first
    connection, so the directory must exist before any worker, beat or producer connects.
    """
    path = sqlite_broker_path(url)
    if path is None:
        return {}
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}


# SQLite's primary result codes for a file that cannot be written.
_CANNOT_WRITE = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_READONLY: "it is read-only",
}


def _cannot_write(exc: BaseException) -> str | None:
    """Why SQLite could not write (disk full, read-only), or None for any other error."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return _CANNOT_WRITE.get(code & 0xFF) if isinstance(code, int) else None


class SQLiteBrokerChannel(kombu_sqlalchemy.Channel):  # type: ignore[misc]
    """kombu's SQL channel, made to keep local faults local (docs/deploy.md).

    kombu never closes a channel's session, so every reconnect kept one pooled
    connection until the pool ran out and the worker died: ``close`` releases it. A
    broker file that cannot be written (disk full, read-only) is logged once and
    polled as an empty queue, instead of a reconnect storm; nothing is taken from it.
    kombu only hides a message it delivers; the consuming channel removes them
    (``_sweep``), so the file holds what waits and not every message ever sent.
    """

    _unwritable: str | None = None  # the fault last logged, shared by the process
    _next_sweep = 0.0  # monotonic time of this channel's next removal of delivered messages

    def close(self) -> None:
        try:
            super().close()  # type: ignore[no-untyped-call]
        finally:
            self._release_session()

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        try:
            message = super()._get(queue)  # type: ignore[no-untyped-call]
        except Empty:
            self._report(None)
            self._sweep()
            raise
        except self.connection.connection_errors as exc:
            # Closed, not pooled: SQLite keeps a file it could only open read-only so.
            self._release_session(invalidate=True)
            reason = _cannot_write(exc)
            if reason is None:
                raise
            self._report(reason)
            raise Empty() from None
        self._report(None)
        self._sweep()
        return message

    def _sweep(self) -> None:
        """Remove up to ``SWEEP_BATCH`` delivered messages, at most every ``SWEEP_EVERY`` s.

        A delivered message is never read again: kombu marks it invisible when it hands it
        over, and the worker keeps it in memory until acked (and puts it back as a new row
        if it stops before that). A fault is left to the next ``_get`` to report.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return
        model = self.message_cls
        session = self.session
        delivered = (
            session.query(model.id)
            .filter(model.visible == False)  # noqa: E712 - SQL, not Python
            .limit(SWEEP_BATCH)
            .scalar_subquery()
        )
        try:
            removed = (
                session.query(model)
                .filter(model.id.in_(delivered))
                .delete(synchronize_session=False)
            )
            session.commit()
        except self.connection.connection_errors:
            self._release_session(invalidate=True)
            removed = 0
        self._next_sweep = now if removed >= SWEEP_BATCH else now + SWEEP_EVERY

    def _release_session(self, *, invalidate: bool = False) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if invalidate:
            session.invalidate()
            return
        try:
            session.rollback()
        finally:
            session.close()

    def _report(self, reason: str | None) -> None:
        before = SQLiteBrokerChannel._unwritable
        if reason == before:
            return
        SQLiteBrokerChannel._unwritable = reason
        where = self.connection.client.hostname
        if reason is not None:
            broker_log.error(
                "broker %s cannot be written (%s): messages wait there, nothing is lost; "
                "free space or fix permissions",
                where,
                reason,
            )
        elif before is not None:
            broker_log.info("broker %s can be written again", where)


class SQLiteBrokerTransport(kombu_sqlalchemy.Transport):  # type: ignore[misc]
    """The ``sqla+sqlite://`` transport with ``SQLiteBrokerChannel``."""

    Channel = SQLiteBrokerChannel

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        return f"sqla+{uri}"


class DemoApp(Celery):  # type: ignore[misc]
    """A Celery app that prepares an embedded SQLite broker before connecting to it."""

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Connection:
        url, kwargs = self._prepared(url, kwargs)
        connection: Connection = super().connection_for_read(url, **kwargs)
        return connection

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Connection:
        url, kwargs = self._prepared(url, kwargs)
        connection: Connection = super().connection_for_write(url, **kwargs)
        return connection

    def _prepared(
        self, url: str | None, kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        target = url or self.conf.broker_url
        extra = prepare_sqlite_broker(target) if isinstance(target, str) else {}
        if not extra:
            return url, kwargs
        kwargs["transport_options"] = {**extra, **(kwargs.get("transport_options") or {})}
        # Our transport class; kombu would pick its own from a "sqla+" prefix.
        kwargs["transport"] = SQLiteBrokerTransport
        return target.split("+", 1)[1], kwargs


class DemoFailure(Exception):
    """Raised by a demo task that was called with ``fail=True``."""


class DemoRetry(Exception):
    """The reason a demo task gives when it asks Celery to retry it."""


app = DemoApp("reconciler-demo")
app.conf.update(
    broker_url=resolve_broker_url(),
    result_backend=None,
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    enable_utc=True,
)
tracking.install(app)


def _task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Task]:
    """``app.task`` with a type, so the task functions below stay typed.

    Not shared: Celery would otherwise add the demo tasks to every other app created in
    the same process (the user's own app, when both are imported).
    """
    decorator: Callable[[Callable[..., Any]], Task] = app.task(name=name, shared=False, **options)
    return decorator


def _fail_if_asked(name: str, fail: bool) -> None:
    if fail:
        raise DemoFailure(f"{name} failed on purpose: it was called with fail=True")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _first(args: tuple[Any, ...], kwargs: dict[str, Any], key: str, default: Any) -> Any:
    """The task's main argument: by keyword, else the first positional one, else the default."""
    if key in kwargs:
        return kwargs[key]
    return args[0] if args else default


def _echo(
    task: str,
    key: str,
    default: Any,
    stamp: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fail: bool,
) -> dict[str, Any]:
    """An echoing task's body: log its main argument (``key``), fail if asked, echo the
    arguments with the time under ``stamp``."""
    value = _first(args, kwargs, key, default)
    logger.info("%s: %s", task, value)
    _fail_if_asked(task, fail)
    return {"task": task, key: value, "args": list(args), "kwargs": kwargs, stamp: _now()}


@_task("app.api.tasks.demo_async_task")
def demo_async_task(*args: Any, fail: bool = False, **kwargs: Any) -> dict[str, Any]:
    """A one-off background job: logs its message (its first argument) and echoes them all."""
    return _echo(
        "demo_async_task", "message", "hello from the demo", "finished_at", args, kwargs, fail
    )


@_task("app.api.tasks.demo_periodic_task")
def demo_periodic_task(*args: Any, fail: bool = False, **kwargs: Any) -> dict[str, Any]:
    """A recurring job: logs a tick (its label, the first argument) and echoes its arguments."""
    return _echo("demo_periodic_task", "label", "tick", "ran_at", args, kwargs, fail)


@_task("app.api.tasks.demo_scheduled_task")
def demo_scheduled_task(*args: Any, fail: bool = False, **kwargs: Any) -> dict[str, Any]:
    """A job meant to run once at a set time: logs its message and echoes its arguments."""
    return _echo("demo_scheduled_task", "message", "scheduled run", "ran_at", args, kwargs, fail)


@_task("app.api.tasks.demo_dynamic_task", bind=True)
def demo_dynamic_task(
    self: Task, *args: Any, fail: bool = False, retries: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """Echoes its arguments. With ``retries=N`` it asks Celery to retry it N times first."""
    attempt = int(self.request.retries or 0)
    logger.info("demo_dynamic_task: args=%r kwargs=%r attempt=%d", args, kwargs, attempt)
    if attempt < retries:
        raise self.retry(
            exc=DemoRetry(f"retry {attempt + 1} of {retries} (called with retries={retries})"),
            countdown=RETRY_COUNTDOWN_SECONDS,
            max_retries=retries,
        )
    _fail_if_asked("demo_dynamic_task", fail)
    return {"task": "demo_dynamic_task", "args": list(args), "kwargs": kwargs, "retries": attempt}


@_task("app.worker.test_celery")
def test_celery(*args: Any, fail: bool = False, **kwargs: Any) -> dict[str, Any]:
    """The old system's smoke-test task: answers with its first argument, echoes them all."""
    word = _first(args, kwargs, "word", "celery")
    logger.info("test_celery: %s", word)
    _fail_if_asked("test_celery", fail)
    return {
        "task": "test_celery",
        "message": f"test task return {word}",
        "args": list(args),
        "kwargs": kwargs,
    }


@_task("app.worker.long_running_task")
def long_running_task(*args: Any, fail: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Works (sleeps) for ``seconds`` (the first argument, default 10), then returns and
    echoes its arguments; with ``fail=True`` it raises at the end."""
    seconds = _first(args, kwargs, "seconds", 10)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, str)):
        raise DemoFailure(f"long_running_task: seconds must be a number, got {seconds!r}")
    try:
        duration = float(seconds)
    except ValueError as exc:
        raise DemoFailure(f"long_running_task: seconds must be a number, got {seconds!r}") from exc
    logger.info("long_running_task: working for %ss", duration)
    deadline = time.monotonic() + duration
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(LONG_RUNNING_STEP_SECONDS, remaining))
    _fail_if_asked("long_running_task", fail)
    return {
        "task": "long_running_task",
        "seconds": seconds,
        "args": list(args),
        "kwargs": kwargs,
        "finished_at": _now(),
    }
