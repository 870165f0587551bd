"""Doctor checks of the processes around the database: broker, workers, registered
tasks, beats and watch loops (docs/cli.md, "doctor")."""

from __future__ import annotations

import datetime as dt
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.ops.checkbase import (
    GIT_PULL_FAILS,
    RECENT_WORKERS,
    Check,
    Context,
    ago,
    listed,
    masked,
)


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
            f"executions of the last {ago(RECENT_WORKERS)} ran on: {', '.join(recent)}"
            if recent
            else f"no execution ran in the last {ago(RECENT_WORKERS)}"
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
            listed(missing),
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
            message = f"no Beat scheduler is alive: the last tick was {ago(newest)} ago"
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
        f"{beat.name}: {state}last tick {ago(beat.age(now))} ago "
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
        names = ", ".join(f"{w.name} (last seen {ago(w.age(ctx.now))} ago)" for w in dead)
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
            f"row (since {ago(ctx.now - since)} ago): {worst.pull_error or 'no reason given'}"
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
    line = f"{watch.name}: last seen {ago(watch.age(now))} ago ({where})"
    if watch.git_pull_every is not None:
        commit = (watch.git_commit or "no commit")[:12]
        failures = watch.pull_failures
        pulls = f"failed {failures} time(s) in a row" if failures else "working"
        line += f", git pull every {watch.git_pull_every:g} s {pulls}, at {commit}"
    return line
