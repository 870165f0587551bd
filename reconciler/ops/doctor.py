"""``reconcile doctor``: the old troubleshooting list as checks, each with its fix.

``run_checks`` runs them in order (database, sync of the task files, broker, workers,
registered tasks, beats, watch loops, the scheduler tasks were imported from, overdue,
disabled, unset secret_env variables, scheduled in the past) and returns ``Check``
values; ``reconciler.cli.doctor`` prints them. A failed check makes later ones that
depend on it ``skip`` rather than pile up errors with one cause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from reconciler.errors import ReconcilerError
from reconciler.ops.checkbase import (
    GIT_PULL_FAILS,
    MARKS,
    PENDING_AFTER,
    Check,
    Context,
    masked,
)
from reconciler.ops.cutover import check_old_scheduler
from reconciler.ops.fleetchecks import (
    check_beat,
    check_broker,
    check_registered,
    check_watch,
    check_workers,
)
from reconciler.ops.taskchecks import (
    check_disabled,
    check_overdue,
    check_queues,
    check_scheduled_in_past,
    check_secret_env,
    check_windows,
)
from reconciler.settings import Settings, resolve_beats_expected
from reconciler.vocabulary import REDBEAT_PREFIX

__all__ = ["GIT_PULL_FAILS", "MARKS", "Check", "healthy", "masked", "run_checks"]


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


CHECKS: list[Callable[[Context], Check | None]] = [
    check_database,
    check_sync,
    check_broker,
    check_workers,
    check_registered,
    check_beat,
    check_watch,
    check_old_scheduler,
    check_overdue,
    check_queues,
    check_disabled,
    check_secret_env,
    check_scheduled_in_past,
    check_windows,
]


def run_checks(
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    timeout: float = 1.0,
    beats_expected: int | None = None,
    pending_after: dt.timedelta = PENDING_AFTER,
    old_scheduler: str | None = None,
    key_prefix: str = REDBEAT_PREFIX,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check in order; ``on_check`` sees each as soon as it is done.

    ``beats_expected``: how many beats should be alive (else ``RECONCILER_BEATS_EXPECTED``;
    a bad value raises ``ConfigError`` before any check runs). ``old_scheduler``: the URL of
    the scheduler tasks were imported from, checked for signs that it still runs."""
    ctx = Context(settings, now or dt.datetime.now(dt.UTC), timeout)
    ctx.beats_expected = resolve_beats_expected(beats_expected)
    ctx.pending_after = pending_after
    ctx.old_scheduler, ctx.key_prefix = old_scheduler, key_prefix
    results = []
    try:
        for check in CHECKS:
            result = check(ctx)
            if result is None:  # a check with nothing to say here (old-beat)
                continue
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
