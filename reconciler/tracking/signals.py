"""Celery's signals connected to the installed trackers: ``install`` connects them once per
process; each handler finds the tracker of the task's app and never fails the task."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from reconciler.tracking.hooks import hook_tasks
from reconciler.tracking.registry import for_task, process, trackers
from reconciler.tracking.tracker import Tracker

logger = logging.getLogger("reconciler.tracking")


def _on_beat_init(**_: Any) -> None:
    process.in_beat = True


def _warm_up(**_: Any) -> None:
    """A worker (or pool process) connects before its first task, not during it."""
    try:
        for tracker in trackers:
            tracker.writer.start()
            tracker.claims.start()
    except Exception:
        logger.exception("execution tracking could not start its writer")


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
    if not trackers:
        return
    name = (kwargs.get("headers") or {}).get("task") or sender
    tracker = next((t for t in trackers if name in t.app.tasks), trackers[0])
    tracker.on_publish(sender, **kwargs)


def _task_handler(method: str) -> Callable[..., None]:
    @_guarded
    def handler(sender: Any = None, **kwargs: Any) -> None:
        tracker = for_task(sender if sender is not None else kwargs.get("task"))
        if tracker is not None:
            getattr(tracker, method)(sender, **kwargs)

    handler.__name__ = f"_on_{method}"
    return handler


@_guarded
def _hook_on_finalize(sender: Any = None, **_: Any) -> None:
    if isinstance(sender, Celery) and any(t.app is sender for t in trackers):
        hook_tasks(sender)


@_guarded
def _hook_in_worker(sender: Any = None, **_: Any) -> None:
    # worker_init (sender: the worker), worker_process_init (the host name),
    # worker_ready (the consumer): every task module is imported by then.
    hostname = sender if isinstance(sender, str) else getattr(sender, "hostname", None)
    for tracker in trackers:
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
    return all(tracker.flush(timeout) for tracker in list(trackers))


@_guarded
def _flush_on_exit(**_: Any) -> None:
    flush(5.0)


def uninstall(app: Celery) -> None:
    """Stop recording this app's executions (after writing what is queued)."""
    for tracker in list(trackers):
        if tracker.app is app:
            tracker.close()
            trackers.remove(tracker)


def install(app: Celery, *, database_url: str | None = None) -> Tracker:
    """Record every execution of this app's managed tasks; idempotent.

    The database is ``database_url``, else ``RECONCILER_DATABASE_URL``, else the app's
    ``reconciler_database_url`` setting, else the embedded default; it is opened
    lazily, in each process that has something to record.
    """
    for tracker in trackers:
        if tracker.app is app:
            return tracker
    tracker = Tracker(app, database_url)
    trackers.append(tracker)
    # Deliveries the reconciler published are claimed before they run: every task class
    # gets the hook once the app's tasks are known, before a worker builds its tracers.
    app.on_after_finalize.connect(_hook_on_finalize, weak=False)
    hook_tasks(app)
    if not process.connected:
        process.connected = True
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
