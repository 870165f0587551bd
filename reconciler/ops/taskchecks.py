"""Doctor checks of the tasks themselves: overdue, queues nobody consumes, disabled,
unset secret variables, past one-offs and ended windows (docs/cli.md, "doctor")."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from reconciler.core.timing import window_end
from reconciler.core.zones import zone
from reconciler.ops.checkbase import (
    OVERDUE_AFTER,
    RECENT_WORKERS,
    Check,
    Context,
    ago,
    listed,
)
from reconciler.vocabulary import TaskType


def check_overdue(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("overdue", "skip", "not checked: the database is not usable")
    late = [
        (t, ctx.now - t.next_run_at)
        for t in ctx.tasks
        if t.enabled and t.next_run_at is not None and ctx.now - t.next_run_at > OVERDUE_AFTER
    ]
    if late:
        return Check(
            "overdue", "fail", f"{len(late)} task(s) should have run more than "
            f"{ago(OVERDUE_AFTER)} ago",
            "make sure a Beat scheduler is running against this database (see 'beat' above)",
            listed([f"{t.name}: due {ago(delay)} ago" for t, delay in late]),
        )  # fmt: skip
    return Check("overdue", "ok", "no task is overdue")


def check_queues(ctx: Context) -> Check:
    """Executions pending longer than ``pending_after``, by queue, with whether any worker
    consumes it: asked over the broker, or judged from the rows when it cannot broadcast."""
    if ctx.database is None:
        return Check("queues", "skip", "not checked: the database is not usable")
    from reconciler.store import health

    threshold = ago(ctx.pending_after)
    with ctx.database.session() as session:
        waiting = health.waiting_since(session, ctx.now - ctx.pending_after)
    if not waiting:
        return Check("queues", "ok", f"no execution has been pending for more than {threshold}")
    default = str(getattr(getattr(ctx.app, "conf", None), "task_default_queue", None) or "celery")
    queues: dict[str, list[Any]] = {}
    for wait in waiting:
        queues.setdefault(wait.queue or default, []).append(wait)
    consumers, asked = _consumers(ctx, queues)
    recent = f"executions of its tasks queued in the last {ago(RECENT_WORKERS)}"
    details, unconsumed = [], []
    for queue, waits in sorted(queues.items()):
        count = sum(w.count for w in waits)
        oldest = ago(ctx.now - min(w.oldest for w in waits))
        names = ", ".join(w.task for w in waits[:5]) + (", ..." if len(waits) > 5 else "")
        seen = consumers.get(queue) if consumers is not None else None
        if consumers is None:
            verdict = "its consumers are unknown"
        elif seen:
            ran = "consumed by" if asked else f"{recent} ran on"
            verdict = f"{ran} {', '.join(sorted(seen))}"
        else:
            verdict = "no worker consumes it" if asked else f"none of the {recent} ran"
            unconsumed.append(queue)
        details.append(f"{queue}: {count} pending, oldest {oldest} ({names}); {verdict}")
    total = sum(w.count for w in waiting)
    message = f"{total} execution(s) pending for more than {threshold} in {len(queues)} queue(s)"
    if not asked:
        broadcast = ctx.workers is not None and not ctx.workers.can_ask
        why = "the broker cannot broadcast" if broadcast else "the workers could not be asked"
        message += f"; {why}, so consumers were judged from the rows alone"
    if unconsumed:
        fix = (
            f"start a worker that consumes {', '.join(repr(q) for q in unconsumed)}: celery -A "
            f"{ctx.settings.app} worker -Q {','.join(unconsumed)} (or add it to a worker's -Q)"
        )
    else:
        fix = "the workers consuming these queues are busy or stuck: add workers or "
        fix += "concurrency, or look at their logs"
    return Check("queues", "fail", message, fix, listed(details))


def _consumers(
    ctx: Context, queues: dict[str, list[Any]]
) -> tuple[dict[str, set[str]] | None, bool]:
    """The workers consuming each queue (None: unknown), and whether the workers were
    asked (``inspect active_queues``) rather than judged from the rows."""
    seen = ctx.workers
    if ctx.broker_ok and seen is not None and seen.can_ask:
        from reconciler.ops.worker import active_queues

        try:
            answers = active_queues(ctx.app, ctx.settings.broker_url, timeout=ctx.timeout)
        except Exception:  # the broker went away between the checks
            return None, True
        found: dict[str, set[str]] = {}
        for worker, names in answers.items():
            for name in names:
                found.setdefault(name, set()).add(worker)
        return found, True
    from reconciler.store import health

    since = ctx.now - RECENT_WORKERS
    with ctx.database.session() as session:
        found = {
            queue: set(health.workers_of(session, [w.task for w in waits], since))
            for queue, waits in queues.items()
        }
    return found, False


def check_disabled(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("disabled", "skip", "not checked: the database is not usable")
    disabled = [t for t in ctx.tasks if not t.enabled]
    if disabled:
        return Check(
            "disabled", "warn", f"{len(disabled)} task(s) are disabled and will not run",
            "set 'enabled: true' in the task's file if it should run",
            listed([t.name + (f" ({t.source})" if t.source else "") for t in disabled]),
        )  # fmt: skip
    return Check("disabled", "ok", "no task is disabled")


def check_secret_env(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("secret_env", "skip", "not checked: the database is not usable")
    unset = [
        f"{t.name}: {', '.join(missing)}" + (f" ({t.source})" if t.source else "")
        for t in ctx.tasks
        if t.enabled and (missing := [name for name in t.secret_env if name not in os.environ])
    ]
    if unset:
        return Check(
            "secret_env", "warn", f"{len(unset)} enabled task(s) name environment variables "
            "(secret_env) that are not set here; their executions will fail when published",
            "set them in the environment of beat and of 'reconcile trigger' (doctor sees only "
            "its own environment)", listed(unset),
        )  # fmt: skip
    return Check("secret_env", "ok", "every secret_env variable of enabled tasks is set")


def check_scheduled_in_past(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("scheduled", "skip", "not checked: the database is not usable")
    past = []
    for t in ctx.tasks:
        if t.type != TaskType.SCHEDULED or t.at is None or t.last_fired_at is not None:
            continue
        try:
            at = dt.datetime.fromisoformat(t.at)
        except ValueError:
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        if at < ctx.now and t.next_run_at is None:
            past.append(f"{t.name}: at {t.at}, never ran")
    if past:
        return Check(
            "scheduled", "warn", f"{len(past)} scheduled task(s) have 'at' in the past and "
            "will not run", "set 'at' to a future time (or remove the task)", listed(past),
        )  # fmt: skip
    return Check("scheduled", "ok", "no scheduled task is stuck in the past")


def check_windows(ctx: Context) -> Check:
    """Enabled tasks whose ``active`` window has ended: they fire no more."""
    if ctx.database is None:
        return Check("window", "skip", "not checked: the database is not usable")
    ended = []
    for t in ctx.tasks:
        if not t.enabled or t.active_until is None:
            continue
        try:
            end = window_end(t.active_until, zone(t.timezone))
        except (ValueError, KeyError, OSError):
            continue
        if end <= ctx.now:
            ended.append(f"{t.name}: active until {t.active_until} ({t.timezone})")
    if ended:
        return Check(
            "window", "warn", f"{len(ended)} task(s) have an active window that has ended and "
            "will not run", "move active.until later (or remove the task)", listed(ended),
        )  # fmt: skip
    return Check("window", "ok", "no task's active window has ended")
