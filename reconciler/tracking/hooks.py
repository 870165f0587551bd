"""The claim before a task runs: a ``before_start`` hook on each task class that claims
the execution row of a delivery the reconciler published, so a second delivery of the
same slot does not run (docs/guarantees.md, "At the worker")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.app.trace import build_tracer
from celery.exceptions import Ignore

from reconciler.tracking.registry import for_task
from reconciler.vocabulary import Header

logger = logging.getLogger("reconciler.tracking")

CLAIM_ATTRIBUTE = "reconciler_claim"
"""Set on a task's request once its delivery was claimed (to the claim's outcome)."""

_HOOK_MARK = "_reconciler_claims"


def redelivered(request: Any) -> bool:
    """The broker hands this message out again: the worker it went to did not ack it.

    AMQP brokers set the flag themselves; kombu's Redis transport sets it on messages it
    restores (visibility timeout, or a worker's unacked messages on shutdown).
    """
    info = getattr(request, "delivery_info", None) or {}
    return bool(info.get("redelivered") or getattr(request, "redelivered", False))


def hooked(cls: type) -> bool:
    """Whether the task class's ``before_start`` claims already."""
    return bool(getattr(getattr(cls, "before_start", None), _HOOK_MARK, False))


def published_here(request: Any) -> bool:
    """The reconciler published this message (beat or ``reconcile trigger``): its row exists.

    A worker sees the message's headers as the request's attributes; ``apply`` (eager
    runs) passes them in ``request.headers``.
    """
    if getattr(request, Header.TRIGGER, None) is not None:
        return True
    headers = getattr(request, "headers", None)
    return isinstance(headers, dict) and headers.get(Header.TRIGGER) is not None


def claimed_before_start(task: Any) -> bool:
    """Whether the task's before_start claims this delivery (so it records the start)."""
    return published_here(task.request) and hooked(type(task))


def _with_claim(inherited: Callable[..., Any]) -> Callable[..., Any]:
    def before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> Any:
        tracker = for_task(self)
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
    hooked_now = 0
    for name, task in list(app.tasks.items()):
        cls = type(task)
        if name.startswith("celery.") or hooked(cls):
            continue
        cls.before_start = _with_claim(cls.before_start)  # type: ignore[method-assign]
        hooked_now += 1
        if task.__trace__ is not None:
            task.__trace__ = build_tracer(name, task, app.loader, hostname, app=app)
    return hooked_now
