"""``reconcile history NAME``: one task's executions, newest first, as text, JSON or CSV.

Reads ``reconciler.store.reads.executions`` (the same objects the HTTP endpoint serves); the
history of a deleted task stays readable.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import Any

import click

from reconciler.cli.fit import time_text
from reconciler.cli.options import echo_json, format_option, handle_errors, settings_of
from reconciler.core.zones import zone
from reconciler.errors import UnknownTask
from reconciler.settings import Settings
from reconciler.vocabulary import Status

TEXT_COLUMNS = ("ID", "QUEUED", "STATUS", "TRIGGER", "DURATION", "RETRIES", "WORKER", "OUTCOME")
OUTCOME_WIDTH = 60


def load_history(
    settings: Settings, name: str, *, limit: int, status: str | None
) -> tuple[list[dict[str, Any]], str]:
    """The newest ``limit`` executions of ``name`` and the task's time zone (UTC when no
    task row is left); UnknownTask when it has no executions and no task."""
    # Imported here: ``reconcile history --help`` lists the options without the database layer.
    from reconciler.store.database import Database
    from reconciler.store.reads.executions import execution_page
    from reconciler.store.reads.reader import Reader
    from reconciler.store.reads.records import execution_dict
    from reconciler.store.reads.tasks import task_zone

    database = Database.open(settings.database_url)
    try:
        reader = Reader(database.engine)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(rows) < limit:
            read = execution_page(
                task=name, status=status, limit=min(limit - len(rows), 500), cursor=cursor
            )
            page, cursor = reader.run(read)
            rows.extend(execution_dict(record) for record in page)
            if cursor is None:
                break
        timezone = reader.run(task_zone(name))
        if not rows and timezone is None:
            raise UnknownTask(
                f"no task named {name!r} and no executions recorded under that name; "
                f"'reconcile status' lists the tasks"
            )
        return rows, timezone or "UTC"
    finally:
        database.dispose()


def duration_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


def outcome_text(execution: dict[str, Any]) -> str:
    if execution["error"]:
        text = str(execution["error"])
    elif execution["result"] is not None:
        text = json.dumps(execution["result"], ensure_ascii=False)
    else:
        text = ""
    text = " ".join(text.split())
    return text if len(text) <= OUTCOME_WIDTH else text[: OUTCOME_WIDTH - 1] + "…"


def text_table(executions: list[dict[str, Any]], zone: dt.tzinfo) -> str:
    """One line per execution, its queue time in ``zone`` as ``status`` shows times."""
    rows = [
        (
            str(e["id"]),
            _queued(e["queued_at"], zone),
            e["status"],
            e["trigger"],
            duration_text(e["duration_ms"]),
            str(e["retries"]),
            e["worker"] or "-",
            outcome_text(e),
        )
        for e in executions
    ]
    widths = [max(len(row[i]) for row in [TEXT_COLUMNS, *rows]) for i in range(len(TEXT_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [TEXT_COLUMNS, *rows]]  # fmt: skip
    return "\n".join(lines)


def _queued(iso_text: str | None, zone: dt.tzinfo) -> str:
    if iso_text is None:
        return "-"
    return time_text(dt.datetime.fromisoformat(iso_text).astimezone(zone))


def write_csv(executions: list[dict[str, Any]]) -> None:
    from reconciler.store.reads.records import EXECUTION_KEYS
    from reconciler.web.csvexport import cell

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(EXECUTION_KEYS)
    for execution in executions:
        writer.writerow([cell(execution[key]) for key in EXECUTION_KEYS])


@click.command("history")
@settings_of("database_url")
@click.argument("name")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many executions to show, newest first.")  # fmt: skip
@click.option("--status", type=click.Choice([status.value for status in Status]), default=None,
              help="Only executions in this state.")  # fmt: skip
@format_option("text", "json", "csv")
@click.option("--utc", is_flag=True,
              help="Times in UTC, not in the task's time zone.")  # fmt: skip
@handle_errors
def history(
    settings: Settings, name: str, limit: int, status: str | None, output_format: str, utc: bool
) -> None:
    """Show the executions of task NAME, newest first (deleted tasks included)."""
    executions, timezone = load_history(settings, name, limit=limit, status=status)
    if output_format == "json":
        echo_json(executions)
    elif output_format == "csv":
        write_csv(executions)
    elif not executions:
        which = f" with status {status}" if status else ""
        click.echo(f"{name}: no executions{which} recorded yet")
    else:
        click.echo(text_table(executions, dt.UTC if utc else zone(timezone)))
        failed = next((e for e in executions if e["traceback"]), None)
        if failed is not None:
            click.echo(f"\nLatest traceback (execution {failed['id']}):\n{failed['traceback']}")
