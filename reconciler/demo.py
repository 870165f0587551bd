"""The bundled demo Celery app (DESIGN §6): the old system's example tasks under their old names.

``make run``, ``reconcile up`` and the end-to-end tests run ``reconciler.demo:app``; the
files in ``tasks.d/`` are written against it. Its broker is ``RECONCILER_BROKER_URL``,
by default an embedded SQLite broker under ``./.reconciler/``; it has no result backend.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.utils.log import get_task_logger
from kombu.connection import Connection

from reconciler import tracking
from reconciler.settings import DEFAULT_BROKER_URL

logger = get_task_logger(__name__)

_SQLITE_BROKER_PREFIXES = ("sqla+sqlite:///", "sqlalchemy+sqlite:///")

# How long one SQLite broker connection waits for another process's write lock before
# failing; beat, the worker and `reconcile trigger` all write to the same file.
SQLITE_BUSY_TIMEOUT_SECONDS = 30

RETRY_COUNTDOWN_SECONDS = 0.2
"""The delay before each retry that ``demo_dynamic_task(retries=N)`` asks for."""

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


class DemoApp(Celery):  # type: ignore[misc]
    """A Celery app that prepares an embedded SQLite broker before connecting to it."""

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Connection:
        connection: Connection = super().connection_for_read(url, **self._prepared(url, kwargs))
        return connection

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Connection:
        connection: Connection = super().connection_for_write(url, **self._prepared(url, kwargs))
        return connection

    def _prepared(self, url: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        target = url or self.conf.broker_url
        extra = prepare_sqlite_broker(target) if isinstance(target, str) else {}
        if extra:
            kwargs["transport_options"] = {**extra, **(kwargs.get("transport_options") or {})}
        return kwargs


class DemoFailure(Exception):
    """Raised by a demo task that was called with ``fail=True``."""


class DemoRetry(Exception):
    """The reason a demo task gives when it asks Celery to retry it."""


app = DemoApp("reconciler-demo")
app.conf.update(
    broker_url=os.environ.get("RECONCILER_BROKER_URL") or DEFAULT_BROKER_URL,
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


@_task("app.api.tasks.demo_async_task")
def demo_async_task(message: str = "hello from the demo", *, fail: bool = False) -> dict[str, Any]:
    """A one-off background job: logs its message and returns it."""
    logger.info("demo_async_task: %s", message)
    _fail_if_asked("demo_async_task", fail)
    return {"task": "demo_async_task", "message": message, "finished_at": _now()}


@_task("app.api.tasks.demo_periodic_task")
def demo_periodic_task(label: str = "tick", *, fail: bool = False) -> dict[str, Any]:
    """A recurring job: logs a tick and returns when it ran."""
    logger.info("demo_periodic_task: %s", label)
    _fail_if_asked("demo_periodic_task", fail)
    return {"task": "demo_periodic_task", "label": label, "ran_at": _now()}


@_task("app.api.tasks.demo_scheduled_task")
def demo_scheduled_task(message: str = "scheduled run", *, fail: bool = False) -> dict[str, Any]:
    """A job meant to run once at a set time: logs its message and returns it."""
    logger.info("demo_scheduled_task: %s", message)
    _fail_if_asked("demo_scheduled_task", fail)
    return {"task": "demo_scheduled_task", "message": message, "ran_at": _now()}


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
def test_celery(word: str = "celery", *, fail: bool = False) -> dict[str, Any]:
    """The old system's smoke-test task."""
    logger.info("test_celery: %s", word)
    _fail_if_asked("test_celery", fail)
    return {"task": "test_celery", "message": f"test task return {word}"}


@_task("app.worker.long_running_task")
def long_running_task(seconds: float = 10, *, fail: bool = False) -> dict[str, Any]:
    """Works (sleeps) for ``seconds``, then returns; with ``fail=True`` it raises at the end."""
    logger.info("long_running_task: working for %ss", seconds)
    deadline = time.monotonic() + float(seconds)
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(LONG_RUNNING_STEP_SECONDS, remaining))
    _fail_if_asked("long_running_task", fail)
    return {"task": "long_running_task", "seconds": seconds, "finished_at": _now()}
