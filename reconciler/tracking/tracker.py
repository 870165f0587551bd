"""Tracking for one Celery app in one process: what each signal and each claim turns into
(an ``ExecutionUpdate`` queued on the writer), the app's settings and its running tasks."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from celery import Celery, states
from celery.exceptions import Ignore

from reconciler.settings import resolve_database_url
from reconciler.store.deliveries import (
    CLAIMED,
    DUPLICATE,
    UNAVAILABLE,
    Claim,
    Delivery,
    DeliveryClaims,
)
from reconciler.store.executions import ExecutionUpdate
from reconciler.tracking.hooks import (
    CLAIM_ATTRIBUTE,
    claimed_before_start,
    published_here,
    redelivered,
)
from reconciler.tracking.registry import process
from reconciler.tracking.values import describe_error, encode_result, json_safe, traceback_text
from reconciler.tracking.writer import Step, Writer
from reconciler.vocabulary import Header, Status

logger = logging.getLogger("reconciler.tracking")

DEFAULT_LOST_AFTER = 3600.0
"""Seconds a started execution without a time limit may run before the reaper calls it lost."""

DEADLINE_GRACE = 30.0
"""Added to a time limit: the worker itself reports a hard time limit within that time."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def database_url_for(app: Celery) -> str:
    """``RECONCILER_DATABASE_URL``, else the app's ``reconciler_database_url``, else the default."""
    return resolve_database_url(configured=app.conf.get("reconciler_database_url"))


def lost_after_for(app: Celery) -> float:
    """``RECONCILER_LOST_AFTER``, else the app's ``reconciler_lost_after``, else an hour."""
    value = os.environ.get("RECONCILER_LOST_AFTER") or app.conf.get("reconciler_lost_after")
    return float(value) if value else DEFAULT_LOST_AFTER


_inherited: list[Writer | DeliveryClaims] = []


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
        url = resolve_database_url(self.database_url_override, configured=self._settings()[0])
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
        if process.in_beat:
            return  # beat's own publishes: the scheduler wrote their rows when it claimed them
        headers = headers or {}
        if Header.TRIGGER in headers or headers.get("retries"):
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
            status=Status.PENDING,
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
        if claimed_before_start(task):
            return  # the claim records the start, if this delivery may run
        self._started(task, task_id, _now(), time.monotonic())

    def _started(self, task: Any, task_id: str, started_at: dt.datetime, clock: float) -> None:
        """Note a running delivery and queue its ``started`` step."""
        self._running[task_id] = (started_at, clock)
        deadline_at = self.deadline(task, started_at)
        update = self._base(
            task, task_id, Status.STARTED, started_at=started_at, deadline_at=deadline_at
        )
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
        if not published_here(request):
            return  # published outside the reconciler: recorded by on_prerun, unclaimed
        started_at, clock = _now(), time.monotonic()
        delivery = Delivery(
            celery_task_id=task_id,
            retries=int(getattr(request, "retries", 0) or 0),
            redelivered=redelivered(request),
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
            elif claim.status == Status.STARTED:
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
            update = self._finish(sender, task_id, Status.SUCCESS, result=encode_result(result))
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
            Status.FAILURE,
            error=describe_error(exception),
            traceback=traceback_text(einfo, exception),
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
                Status.RETRY,
                error=error or None,
                traceback=traceback_text(einfo, None),
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
        update = self._finish(sender, task_id, Status.REVOKED, error=reason)
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
