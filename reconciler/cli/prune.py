"""``reconcile prune [--dry-run] [--task NAME]``: remove the history past its retention now,
as beat does on its own (docs/cli.md, docs/tracking.md "Retention")."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, settings_of
from reconciler.errors import UnknownTask
from reconciler.settings import Settings, resolve_history_keep

if TYPE_CHECKING:  # the database layer loads when it runs, not for --help
    from reconciler.store.retention import Pruner, PruneReport

BUDGET = 3600.0
TURN = 0.1  # seconds between tries while a beat holds the pruners' lease


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def report_dict(report: PruneReport, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "executions": report.executions,
        "tasks": [
            {
                "task": item.task_name,
                "rows": item.rows,
                "oldest_queued_at": _iso(item.oldest),
                "newest_queued_at": _iso(item.newest),
            }
            for item in sorted(report.tasks.values(), key=lambda item: item.task_name)
        ],
        "days_rolled_up": report.days_rolled_up,
        "statistics_days": report.stats_days,
        "applies": report.applies,
        "alerts": report.alerts,
        "watch_heartbeats": report.watch_heartbeats,
        "finished": report.finished,
    }


def report_text(report: PruneReport, dry_run: bool) -> str:
    verb = "Would remove" if dry_run else "Removed"
    lines = [f"{verb} {report.executions:,} execution(s) of {len(report.tasks):,} task(s)."]
    if report.tasks:
        width = max(len("TASK"), *(len(name) for name in report.tasks))
        lines.append(f"{'TASK':<{width}}  {'ROWS':>9}  {'OLDEST QUEUED':<20}  NEWEST QUEUED")
        for item in sorted(report.tasks.values(), key=lambda item: item.task_name):
            oldest = item.oldest.strftime("%Y-%m-%d %H:%M:%S") if item.oldest else "-"
            newest = item.newest.strftime("%Y-%m-%d %H:%M:%S") if item.newest else "-"
            lines.append(f"{item.task_name:<{width}}  {item.rows:>9,}  {oldest:<20}  {newest}")
    if not dry_run:
        lines.append(
            f"Statistics: {report.days_rolled_up} day(s) rolled up, {report.stats_days} "
            f"day row(s) past a year removed. Apply log: {report.applies} removed; alerts: "
            f"{report.alerts}; watch heartbeats: {report.watch_heartbeats}."
        )
        if not report.finished:
            lines.append("Stopped before the end; run it again to go on.")
    return "\n".join(lines)


def prune_taking_turns(pruner: Pruner, task: str | None) -> PruneReport:
    """Passes until one ends done or out of time: a pass that found a beat holding the
    lease tries again a moment later, after the beat's transaction."""
    from reconciler.store.retention import PruneReport

    deadline = time.monotonic() + BUDGET
    report = PruneReport()
    while True:
        report.merge(pruner.run(task=task, budget=max(deadline - time.monotonic(), 0.0)))
        if not report.busy or time.monotonic() >= deadline:
            return report
        time.sleep(TURN)


@click.command("prune")
@settings_of("database_url")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("--task", "task", default=None, metavar="NAME", help="Only this task's executions.")
@format_option("text", "json")
@handle_errors
def prune(settings: Settings, dry_run: bool, task: str | None, output_format: str) -> None:
    """Remove executions past their retention now (Beat also does it on its own)."""
    from reconciler.store.database import Database
    from reconciler.store.retention import Pruner, PruneReport, policies, preview

    days = resolve_history_keep()
    database = Database.open(settings.database_url, create=not dry_run, upgrade=not dry_run)
    try:
        if task is not None and database.current_revision() is not None:
            with database.session() as session:
                if not policies(session, days, task):
                    raise UnknownTask(f"no task named {task!r}; 'reconcile status' lists the tasks")
        now = dt.datetime.now(dt.UTC)
        if dry_run and database.current_revision() is None:
            report = PruneReport()  # an empty database: nothing recorded, nothing created
        elif dry_run:
            report = preview(database, days, now, task)
        else:
            report = prune_taking_turns(Pruner(database, days, clock=lambda: now), task)
    finally:
        database.dispose()
    if output_format == "json":
        echo_json(report_dict(report, dry_run))
    else:
        click.echo(report_text(report, dry_run))
