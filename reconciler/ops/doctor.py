"""``reconcile doctor``: the old troubleshooting list as checks, each with its fix.

``run_checks`` runs them in order (database, broker, workers, registered tasks, beat
heartbeat, overdue, disabled, unset secret_env variables, scheduled in the past) and
returns ``Check`` values; ``reconciler.cli.doctor`` prints them. A failed check makes
later ones that depend on it ``skip`` rather than pile up errors with one cause.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reconciler.errors import ReconcilerError
from reconciler.settings import Settings
from reconciler.vocabulary import TaskType

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}

BEAT_STALE_AFTER = dt.timedelta(seconds=30)
"""Beat writes its heartbeat every second; older than this, it is not running."""

OVERDUE_AFTER = dt.timedelta(seconds=60)
"""A next run this far in the past means nothing is firing it."""

RECENT_WORKERS = dt.timedelta(minutes=10)
DETAILS_SHOWN = 20


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def masked(url: str) -> str:
    """A URL with its password hidden."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def _ago(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _listed(items: list[str]) -> list[str]:
    if len(items) <= DETAILS_SHOWN:
        return items
    return [*items[:DETAILS_SHOWN], f"... and {len(items) - DETAILS_SHOWN} more"]


@dataclass
class Context:
    """What the checks found so far, for the checks after them."""

    settings: Settings
    now: dt.datetime
    timeout: float
    database: Any = None
    app: Any = None
    broker_ok: bool = False
    workers: Any = None
    tasks: list[Any] = field(default_factory=list)


def check_database(ctx: Context) -> Check:
    from reconciler.store.database import Database, head_revision

    url = masked(ctx.settings.database_url)
    fix_url = (
        "check --database-url / RECONCILER_DATABASE_URL and that the database server is running"
    )
    try:
        database = Database.open(ctx.settings.database_url, upgrade=False)
        revision = database.current_revision()
    except ReconcilerError as exc:
        return Check("database", "fail", f"{url}: {exc}", fix_url)
    except Exception as exc:  # a bad URL or a driver error: report it, do not crash
        return Check("database", "fail", f"{url}: {type(exc).__name__}: {exc}", fix_url)
    head = head_revision()
    if revision is None:
        database.dispose()
        fix = "run 'reconcile db upgrade' (or any reconcile command that opens it)"
        return Check("database", "fail", f"{url} is reachable but has no schema", fix)
    if revision != head:
        database.dispose()
        return Check(
            "database", "fail", f"{url} is at schema revision {revision}, not {head}",
            "run 'reconcile db upgrade'; if the database is newer, upgrade celery-reconciler",
        )  # fmt: skip
    ctx.database = database
    from reconciler.store import health

    with database.session() as session:
        ctx.tasks = health.live_tasks(session)
    return Check("database", "ok", f"{url} reachable, schema up to date ({revision})")


def check_broker(ctx: Context) -> Check:
    from reconciler.celeryapp import load_app
    from reconciler.ops.worker import broker_error

    url = masked(ctx.settings.broker_url)
    try:
        ctx.app = load_app(ctx.settings.app)
    except ReconcilerError as exc:
        return Check("broker", "fail", str(exc), "check --app / RECONCILER_APP")
    error = broker_error(ctx.app, ctx.settings.broker_url, timeout=ctx.timeout)
    if error is not None:
        fix = "start the broker, or correct --broker-url / RECONCILER_BROKER_URL"
        return Check("broker", "fail", f"{url}: {error}", fix)
    ctx.broker_ok = True
    return Check("broker", "ok", f"{url} reachable")


def check_workers(ctx: Context) -> Check:
    from reconciler.ops.worker import ask_workers

    if not ctx.broker_ok:
        return Check("workers", "skip", "not asked: the broker is not reachable")
    start = f"celery -A {ctx.settings.app} worker -l INFO (or 'reconcile up')"
    try:
        seen = ask_workers(ctx.app, ctx.settings.broker_url, timeout=ctx.timeout)
    except Exception as exc:  # the broker went away between the checks
        return Check("workers", "fail", f"asking the workers failed: {exc}", f"start one: {start}")
    ctx.workers = seen
    if not seen.can_ask:
        recent = _recent_workers(ctx)
        evidence = (
            f"executions of the last {_ago(RECENT_WORKERS)} ran on: {', '.join(recent)}"
            if recent
            else f"no execution ran in the last {_ago(RECENT_WORKERS)}"
        )
        return Check(
            "workers", "warn", f"this broker cannot broadcast, so workers cannot be asked; "
            f"{evidence}", "use Redis or RabbitMQ as the broker to let doctor ping workers",
        )  # fmt: skip
    if not seen.names:
        return Check("workers", "fail", f"no worker answered within {ctx.timeout:g} s",
                     f"start one: {start}")  # fmt: skip
    count = len(seen.names)
    return Check("workers", "ok", f"{count} worker{'s' if count != 1 else ''} answered: "
                 f"{', '.join(seen.names)}")  # fmt: skip


def _recent_workers(ctx: Context) -> list[str]:
    if ctx.database is None:
        return []
    from reconciler.store import health

    with ctx.database.session() as session:
        return health.recent_workers(session, ctx.now - RECENT_WORKERS)


def check_registered(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("registered", "skip", "not checked: the database is not usable")
    seen = ctx.workers
    if seen is not None and seen.names:
        known, where = seen.all_registered, "no worker registers"
    elif ctx.app is not None and (seen is None or not seen.can_ask):
        from reconciler.celeryapp import registered_task_names

        known, where = frozenset(registered_task_names(ctx.app)), f"{ctx.settings.app} lacks"
    else:
        return Check("registered", "skip", "not checked: no worker answered")
    missing = [
        f"{t.name}: {t.celery_name}" + (f" ({t.source})" if t.source else "")
        for t in ctx.tasks
        if t.celery_name not in known
    ]
    if missing:
        return Check(
            "registered", "fail", f"{len(missing)} task(s) use a Celery task {where}",
            "fix the 'task:' field, or import the task's module in the worker's app",
            _listed(missing),
        )  # fmt: skip
    return Check("registered", "ok", f"all {len(ctx.tasks)} task(s) use registered Celery tasks")


def check_beat(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("beat", "skip", "not checked: the database is not usable")
    from reconciler.store import health

    with ctx.database.session() as session:
        tick = health.last_tick(session)
    start = f"start it: celery -A {ctx.settings.app} beat -S reconciler.beat:DatabaseScheduler"
    if tick is None:
        return Check("beat", "fail", "no Beat scheduler has ever ticked on this database", start)
    age = ctx.now - tick
    if age > BEAT_STALE_AFTER:
        return Check("beat", "fail", f"the last Beat tick was {_ago(age)} ago", start)
    return Check(
        "beat", "ok", f"heartbeat fresh (last tick {max(age.total_seconds(), 0):.1f} s ago)"
    )


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
            f"{_ago(OVERDUE_AFTER)} ago",
            "make sure a Beat scheduler is running against this database (see 'beat' above)",
            _listed([f"{t.name}: due {_ago(delay)} ago" for t, delay in late]),
        )  # fmt: skip
    return Check("overdue", "ok", "no task is overdue")


def check_disabled(ctx: Context) -> Check:
    if ctx.database is None:
        return Check("disabled", "skip", "not checked: the database is not usable")
    disabled = [t for t in ctx.tasks if not t.enabled]
    if disabled:
        return Check(
            "disabled", "warn", f"{len(disabled)} task(s) are disabled and will not run",
            "set 'enabled: true' in the task's file if it should run",
            _listed([t.name + (f" ({t.source})" if t.source else "") for t in disabled]),
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
            "its own environment)", _listed(unset),
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
            "will not run", "set 'at' to a future time (or remove the task)", _listed(past),
        )  # fmt: skip
    return Check("scheduled", "ok", "no scheduled task is stuck in the past")


CHECKS: list[Callable[[Context], Check]] = [
    check_database,
    check_broker,
    check_workers,
    check_registered,
    check_beat,
    check_overdue,
    check_disabled,
    check_secret_env,
    check_scheduled_in_past,
]


def run_checks(
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    timeout: float = 1.0,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check in order; ``on_check`` sees each as soon as it is done."""
    ctx = Context(settings, now or dt.datetime.now(dt.UTC), timeout)
    results = []
    try:
        for check in CHECKS:
            result = check(ctx)
            results.append(result)
            if on_check is not None:
                on_check(result)
    finally:
        if ctx.database is not None:
            ctx.database.dispose()
    return results


def healthy(checks: list[Check]) -> bool:
    """No check failed (warnings and skips do not fail)."""
    return all(check.status != "fail" for check in checks)
