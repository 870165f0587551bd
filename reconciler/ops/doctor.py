"""``reconcile doctor``: the old troubleshooting list as checks, each with its fix.

``run_checks`` runs them in order (database, sync of the task files, broker, workers,
registered tasks, beats, watch loops, overdue, disabled, unset secret_env variables,
scheduled in the past) and returns ``Check`` values; ``reconciler.cli.doctor`` prints
them. A failed check makes later ones that depend on it ``skip`` rather than pile up
errors with one cause.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reconciler.errors import ReconcilerError
from reconciler.settings import Settings, resolve_beats_expected
from reconciler.vocabulary import TaskType

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}

GIT_PULL_FAILS = 3
"""``watch --git-pull`` failures in a row that fail the ``watch`` check (fewer warn)."""

OVERDUE_AFTER = dt.timedelta(seconds=60)
"""A next run this far in the past means nothing is firing it."""

RECENT_WORKERS = dt.timedelta(minutes=10)

PENDING_AFTER = dt.timedelta(minutes=5)
"""An execution pending this long is in a queue nobody consumes, or consumers too slow."""
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
    beats_expected: int | None = None
    pending_after: dt.timedelta = field(default_factory=lambda: PENDING_AFTER)


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


SYNC_FIXES = {
    "invalid": "fix the errors in the task files ('reconcile validate' lists them); the "
    "next valid state is applied by 'reconcile watch', or run 'reconcile'",
    "refused": "read the error: if the deletes are intended run 'reconcile --allow-mass-delete', "
    "else correct --tasks-dir or the task file it names",
    "failed": "run 'reconcile' again; on a lock timeout, find the other reconciler holding "
    "the apply lock",
}


def check_sync(ctx: Context) -> Check:
    """The latest apply attempt applied the task files (docs/plan-and-apply.md)."""
    if ctx.database is None:
        return Check("sync", "skip", "not checked: the database is not usable")
    from reconciler.store.reads.applies import sync_state

    with ctx.database.session() as session:
        sync = sync_state(session)
    line = sync.line(ctx.now)
    if sync.latest is None:
        return Check(
            "sync", "warn", line, "run 'reconcile' or 'reconcile watch' (or 'reconcile up')"
        )
    if not sync.in_sync:
        fix = SYNC_FIXES.get(sync.latest.outcome, SYNC_FIXES["failed"])
        return Check("sync", "fail", line, fix, sync.errors())
    return Check("sync", "ok", line)


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
    """How many beats are alive, against ``--beats-expected`` when given (docs/beat.md)."""
    if ctx.database is None:
        return Check("beat", "skip", "not checked: the database is not usable")
    from reconciler.store import heartbeats

    with ctx.database.session() as session:
        beats = heartbeats.beats(session)
    start = f"start it: celery -A {ctx.settings.app} beat -S reconciler.beat:DatabaseScheduler"
    alive = [b for b in beats if b.alive(ctx.now)]
    stopped = [b for b in beats if not b.alive(ctx.now)]
    details = [_beat_line(b, ctx.now) for b in beats]
    expected = ctx.beats_expected
    if not alive:
        if stopped:
            newest = min(b.age(ctx.now) for b in stopped)
            message = f"no Beat scheduler is alive: the last tick was {_ago(newest)} ago"
        else:
            message = "no Beat scheduler is running against this database"
        if expected:
            message = f"0 of {expected} beats alive: {message}"
        return Check("beat", "fail", message, start, details)
    count = f"{len(alive)} of {expected}" if expected else str(len(alive))
    message = f"{count} beat{'s' if (expected or len(alive)) != 1 else ''} alive"
    if expected and len(alive) < expected:
        fix = (
            f"start the missing beat(s) ({start.removeprefix('start it: ')}), each with its "
            f"own RECONCILER_BEAT_NAME; or set --beats-expected / RECONCILER_BEATS_EXPECTED"
        )
        return Check("beat", "fail", message, fix, details)
    renamed = [b for b in alive if b.wanted_name]
    if stopped or renamed:
        notes = []
        if stopped:
            notes.append(f"{len(stopped)} stopped ticking: {', '.join(b.name for b in stopped)}")
        if renamed:
            notes.append(f"{len(renamed)} under another name than asked")
        fix = (
            "a beat that stopped ticking was killed or is stuck: restart it, or let its row "
            "go (any beat removes it 5 min after its last tick); give beats on one host "
            "distinct RECONCILER_BEAT_NAME values"
        )
        return Check("beat", "warn", f"{message}; {'; '.join(notes)}", fix, details)
    if expected and len(alive) > expected:
        message += f" (more than the {expected} expected)"
    return Check("beat", "ok", message, None, details)


def _beat_line(beat: Any, now: dt.datetime) -> str:
    state = "" if beat.alive(now) else "not ticking, "
    line = (
        f"{beat.name}: {state}last tick {_ago(beat.age(now))} ago "
        f"(pid {beat.pid} on {beat.hostname})"
    )
    if beat.wanted_name:
        line += f"; asked for {beat.wanted_name!r}, which another running beat holds"
    return line


def check_watch(ctx: Context) -> Check:
    """Every watch loop writing its heartbeat, and its ``--git-pull`` working (docs/cli.md)."""
    if ctx.database is None:
        return Check("watch", "skip", "not checked: the database is not usable")
    from reconciler.store import heartbeats

    with ctx.database.session() as session:
        watches = heartbeats.watches(session)
    if not watches:
        return Check(
            "watch", "ok", "no watch loop runs against this database "
            "(the task files are applied by 'reconcile' alone)",
        )  # fmt: skip
    dead = [w for w in watches if not w.alive(ctx.now)]
    failing = [w for w in watches if w.alive(ctx.now) and w.pull_failures >= GIT_PULL_FAILS]
    shaky = [w for w in watches if w.alive(ctx.now) and 0 < w.pull_failures < GIT_PULL_FAILS]
    details = [_watch_line(w, ctx.now) for w in watches]
    if dead:
        names = ", ".join(f"{w.name} (last seen {_ago(w.age(ctx.now))} ago)" for w in dead)
        fix = (
            "restart it ('reconcile watch' or the unit that runs it); a loop stopped for "
            "good removes its row when stopped with SIGTERM, else delete it: DELETE FROM "
            "watch_heartbeats WHERE name = 'NAME'"
        )
        return Check("watch", "fail", f"watch loop not running: {names}", fix, details)
    if failing or shaky:
        worst = (failing or shaky)[0]
        since = worst.pull_failing_since or ctx.now
        message = (
            f"git pull of watch loop {worst.name} failed {worst.pull_failures} time(s) in a "
            f"row (since {_ago(ctx.now - since)} ago): {worst.pull_error or 'no reason given'}"
        )
        fix = (
            f"run 'git pull --ff-only' in {worst.tasks_dir} as the user the loop runs as, "
            "to see why (credentials, network, a branch that cannot fast-forward)"
        )
        return Check("watch", "fail" if failing else "warn", message, fix, details)
    count = len(watches)
    return Check(
        "watch", "ok", f"{count} watch loop{'s' if count != 1 else ''} running", None, details
    )


def _watch_line(watch: Any, now: dt.datetime) -> str:
    where = f"pid {watch.pid} on {watch.hostname}"
    line = f"{watch.name}: last seen {_ago(watch.age(now))} ago ({where})"
    if watch.git_pull_every is not None:
        commit = (watch.git_commit or "no commit")[:12]
        failures = watch.pull_failures
        pulls = f"failed {failures} time(s) in a row" if failures else "working"
        line += f", git pull every {watch.git_pull_every:g} s {pulls}, at {commit}"
    return line


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


def check_queues(ctx: Context) -> Check:
    """Executions pending longer than ``pending_after``, by queue, with whether any worker
    consumes it: asked over the broker, or judged from the rows when it cannot broadcast."""
    if ctx.database is None:
        return Check("queues", "skip", "not checked: the database is not usable")
    from reconciler.store import health

    threshold = _ago(ctx.pending_after)
    with ctx.database.session() as session:
        waiting = health.waiting_since(session, ctx.now - ctx.pending_after)
    if not waiting:
        return Check("queues", "ok", f"no execution has been pending for more than {threshold}")
    default = str(getattr(getattr(ctx.app, "conf", None), "task_default_queue", None) or "celery")
    queues: dict[str, list[Any]] = {}
    for wait in waiting:
        queues.setdefault(wait.queue or default, []).append(wait)
    consumers, asked = _consumers(ctx, queues)
    recent = f"executions of its tasks queued in the last {_ago(RECENT_WORKERS)}"
    details, unconsumed = [], []
    for queue, waits in sorted(queues.items()):
        count = sum(w.count for w in waits)
        oldest = _ago(ctx.now - min(w.oldest for w in waits))
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
    return Check("queues", "fail", message, fix, _listed(details))


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
    check_sync,
    check_broker,
    check_workers,
    check_registered,
    check_beat,
    check_watch,
    check_overdue,
    check_queues,
    check_disabled,
    check_secret_env,
    check_scheduled_in_past,
]


def run_checks(
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    timeout: float = 1.0,
    beats_expected: int | None = None,
    pending_after: dt.timedelta = PENDING_AFTER,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check in order; ``on_check`` sees each as soon as it is done.

    ``beats_expected``: how many beats should be alive (else ``RECONCILER_BEATS_EXPECTED``;
    a bad value raises ``ConfigError`` before any check runs)."""
    ctx = Context(settings, now or dt.datetime.now(dt.UTC), timeout)
    ctx.beats_expected = resolve_beats_expected(beats_expected)
    ctx.pending_after = pending_after
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
