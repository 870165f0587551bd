"""``reconcile next NAME``: a task's next fire times, read from the task files (docs/cli.md).

Loads the tasks directory (no database), finds the task and prints the times from
``reconciler.core.schedule`` in the task's time zone, with the schedule in words.
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, tasks_dir_option
from reconciler.core.describe import describe
from reconciler.core.schedule import next_fire_times
from reconciler.core.spec import TaskSpec
from reconciler.errors import ReconcilerError, UnknownTask, UsageError
from reconciler.files.loader import LoadResult, load_directory
from reconciler.files.taskfile import LoadedTask
from reconciler.settings import Settings
from reconciler.vocabulary import TaskType


@click.command("next")
@click.argument("name")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 10_000),
    default=5,
    show_default=True,
    help="How many fire times to show.",
)
@click.option(
    "--from",
    "start_text",
    metavar="ISO",
    default=None,
    help="Show times after this ISO 8601 time (no offset: the task's time zone); an "
    "interval counts from it. [default: now]",
)
@tasks_dir_option()
@format_option("text", "json")
@handle_errors
def next_(
    name: str, count: int, start_text: str | None, tasks_dir: str | None, output_format: str
) -> None:
    """Show the next fire times of task NAME, in its time zone, and its schedule in words."""
    directory = Settings.resolve(tasks_dir=tasks_dir).tasks_dir
    loaded = find_task(load_directory(directory), name, str(directory))
    spec = loaded.spec
    start = parse_start(start_text, spec)
    report = fire_report(loaded, start, count)
    if output_format == "json":
        echo_json(report)
    else:
        click.echo(as_text(report, spec))


def find_task(result: LoadResult, name: str, directory: str) -> LoadedTask:
    """The task called ``name``; invalid files or an unknown name are errors."""
    if result.errors:
        for diagnostic in result.diagnostics:
            click.echo(_diagnostic_line(str(diagnostic), diagnostic.severity), err=True)
        count = len(result.errors)
        raise ReconcilerError(
            f"{count} error{'' if count == 1 else 's'} in the task files under {directory}; "
            f"fix them (reconcile validate lists them) and run again"
        )
    for task in result.tasks:
        if task.spec.name == name:
            for diagnostic in result.warnings:
                if diagnostic.path == task.path:
                    click.echo(_diagnostic_line(str(diagnostic), "warning"), err=True)
            return task
    names = sorted(task.spec.name for task in result.tasks)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        known = "did you mean " + " or ".join(repr(each) for each in close) + "?"
    elif names:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        known = f"the tasks there are: {shown}"
    else:
        known = "there are no tasks there"
    raise UnknownTask(f"no task named {name!r} in {directory}; {known}")


def parse_start(text: str | None, spec: TaskSpec) -> dt.datetime:
    """``--from`` as an aware time (the task's zone when it has no offset); default now."""
    if text is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        start = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--from: {text!r} is not an ISO 8601 time; use e.g. 2026-10-25T02:00:00+02:00, "
            f"or 2026-10-25T02:00 for the task's time zone ({spec.timezone})"
        ) from None
    if start.tzinfo is None:
        # A wall time that occurs twice means its first occurrence, as for crontabs.
        start = start.replace(tzinfo=spec.tz)
    return start


def fire_report(loaded: LoadedTask, start: dt.datetime, count: int) -> dict[str, Any]:
    """The JSON form: times as ISO 8601 with the offset of the task's zone."""
    spec = loaded.spec
    times = next_fire_times(spec, start, count)
    return {
        "name": spec.name,
        "description": spec.description,
        "type": spec.type,
        "schedule": describe(spec),
        "crontab": spec.crontab.expression if spec.crontab is not None else None,
        "timezone": spec.timezone,
        "enabled": spec.enabled,
        "path": loaded.path,
        "line": loaded.line,
        "from": start.astimezone(spec.tz).isoformat(),
        "next": [moment.astimezone(spec.tz).isoformat() for moment in times],
    }


def as_text(report: dict[str, Any], spec: TaskSpec) -> str:
    lines = [f"{report['name']}: {report['schedule']}"]
    if report["description"]:
        lines.append(f"  {report['description']}")
    origin = f"  {report['path']}:{report['line']}"
    if report["crontab"]:
        origin += f"  crontab {report['crontab']!r}"
    lines.append(origin)
    if not spec.enabled:
        lines.append("  disabled (enabled: false): it fires at these times only once enabled")
    times: list[str] = report["next"]
    if times:
        lines.append(f"next {len(times)} after {report['from']} ({spec.timezone}):")
        for text in times:
            weekday = dt.datetime.fromisoformat(text).strftime("%a")
            lines.append(f"  {text}  {weekday}")
    elif spec.type == TaskType.ASYNC:
        lines.append("no times: it is not on a schedule")
    elif spec.type == TaskType.SCHEDULED and spec.at is not None:
        at = spec.at.astimezone(spec.tz).isoformat()
        lines.append(f"no times after {report['from']}: it fires once, at {at}")
    else:
        lines.append(f"no times after {report['from']}: the crontab never matches a date")
    return "\n".join(lines)


def _diagnostic_line(text: str, severity: str) -> str:
    return f"{severity}: {text}"
