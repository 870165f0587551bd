"""``reconcile next NAME``: a task's next fire times, read from the task files (docs/cli.md).

Loads the tasks directory, finds the task (other files' errors are only counted) and
prints the times from ``reconciler.core.schedule`` in the task's time zone, with the
schedule in words; an interval counts from the anchor the database holds, when it holds
the task. ``--cron`` / ``--interval`` answer for an expression without a file.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, settings_of
from reconciler.errors import ReconcilerError, UnknownTask, UsageError
from reconciler.settings import Settings
from reconciler.vocabulary import TaskType

if TYPE_CHECKING:  # the model (pydantic) and the database load when it runs, not for --help
    from reconciler.core.spec import TaskSpec
    from reconciler.files.loader import LoadResult
    from reconciler.files.taskfile import LoadedTask


@click.command("next")
@click.argument("name", required=False)
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
    help="Show times after this ISO 8601 time (no offset: the task's time zone). [default: now]",
)
@click.option("--cron", "cron_text", metavar="EXPR", help="A crontab to show instead of a task.")
@click.option(
    "--interval", "interval_text", metavar="DURATION", help="An interval (90m) instead of a task."
)
@click.option("--timezone", "zone_name", metavar="ZONE", help="The zone of --cron [default: UTC].")
@click.option(
    "--spread",
    "spread_text",
    metavar="DURATION",
    help="With --cron/--interval: move each time by NAME's offset in [0, DURATION).",
)
@click.option(
    "--calendar",
    "calendar_names",
    metavar="NAME",
    multiple=True,
    help="With --cron/--interval: skip the dates of this calendar of the tasks directory.",
)
@settings_of("tasks_dir", "database_url")
@format_option("text", "json")
@handle_errors
def next_(
    settings: Settings,
    name: str | None,
    count: int,
    start_text: str | None,
    cron_text: str | None,
    interval_text: str | None,
    zone_name: str | None,
    spread_text: str | None,
    calendar_names: tuple[str, ...],
    output_format: str,
) -> None:
    """Show the next fire times of task NAME (or of --cron / --interval), in its time zone."""
    from reconciler.files.loader import load_directory

    directory = settings.tasks_dir
    anchor_note = None
    if cron_text is not None or interval_text is not None:
        loaded = expression_task(
            name, cron_text, interval_text, zone_name, spread_text, calendar_names, directory
        )
        start = parse_start(start_text, loaded.spec)
        anchor = None
    else:
        if name is None:
            raise UsageError("give a task NAME, or --cron EXPR or --interval DURATION")
        for option, value in (("--timezone", zone_name), ("--spread", spread_text)):
            if value is not None:
                raise UsageError(f"{option} goes with --cron or --interval, not with a task NAME")
        if calendar_names:
            raise UsageError("--calendar goes with --cron or --interval, not with a task NAME")
        loaded = find_task(load_directory(directory), name, str(directory))
        start = parse_start(start_text, loaded.spec)
        anchor, anchor_note = stored_anchor(settings.database_url, loaded.spec)
    report = fire_report(loaded, start, count, anchor)
    if anchor_note:
        report["anchor_from"] = anchor_note
    if output_format == "json":
        echo_json(report)
    else:
        click.echo(as_text(report, loaded.spec))


_OPTION_OF = {"crontab": "--cron", "interval": "--interval", "timezone": "--timezone"}


def expression_task(
    name: str | None,
    cron_text: str | None,
    interval_text: str | None,
    zone_name: str | None,
    spread_text: str | None,
    calendar_names: tuple[str, ...],
    directory: Path,
) -> LoadedTask:
    """A task made of the options alone, so ``next`` answers for an expression."""
    from pydantic import ValidationError

    from reconciler.core.spec import TaskSpec
    from reconciler.files.loader import load_directory
    from reconciler.files.taskfile import LoadedTask

    if cron_text is not None and interval_text is not None:
        raise UsageError("give --cron or --interval, not both")
    data: dict[str, Any] = {
        "name": name or "expression",
        "owner": "-",
        "type": "periodic",
        "task": "-",
        "timezone": zone_name or "UTC",
    }
    if cron_text is not None:
        data["crontab"] = cron_text
    else:
        data["interval"] = interval_text
    if spread_text is not None:
        data["spread"] = spread_text
    if calendar_names:
        data["skip_on"] = list(calendar_names)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "name"
        option = _OPTION_OF.get(field, f"--{field.replace('_', '-')}")
        if field == "skip_on":
            option = "--calendar"
        error = first.get("ctx", {}).get("error")
        message = getattr(error, "message", None) or first["msg"]
        hint = getattr(error, "hint", None)
        raise UsageError(f"{option}: {message}" + (f" (hint: {hint})" if hint else "")) from None
    if calendar_names:
        calendars = load_directory(directory).calendars
        unknown = [each for each in calendar_names if each not in calendars]
        if unknown:
            raise UsageError(
                f"--calendar: no calendar named {unknown[0]!r} under {directory}"
                + (
                    f"; the calendars there are: {', '.join(sorted(calendars))}"
                    if calendars
                    else ""
                )
            )
        spec = spec.updated(
            calendars={each: calendars[each].calendar.entries for each in calendar_names}
        )
    return LoadedTask(spec, "(options)", 0)


def stored_anchor(url: str, spec: TaskSpec) -> tuple[dt.datetime | None, str | None]:
    """The anchor beat counts the task's interval from, when the database holds the task
    with the same schedule; else None and why (the times then count from --from)."""
    from reconciler.core.spec import SCHEDULE_FIELDS
    from reconciler.store import tasks as store
    from reconciler.store.database import Database, unavailable_as_error

    if spec.interval is None:
        return None, None
    try:
        database = Database.open(url, upgrade=False, create=False)
        try:
            with unavailable_as_error(database.engine), database.session() as session:
                stored = store.stored_schedule(session, spec.name)
        finally:
            database.dispose()
    except ReconcilerError:
        return None, "from (the database could not be reached)"
    if stored is None or stored.schedule_anchor is None:
        if spec.last_run is not None:  # the apply that creates it counts from it
            return spec.last_run, "last_run (the task is not applied yet)"
        return None, "from (the task is not applied yet)"
    held = stored.spec if isinstance(stored.spec, dict) else {}
    mine = spec.canonical()
    if any(held.get(field) != mine.get(field) for field in SCHEDULE_FIELDS):
        return None, "from (the files change its schedule; apply restarts it)"
    return stored.schedule_anchor, "database"


def find_task(result: LoadResult, name: str, directory: str) -> LoadedTask:
    """The task called ``name``; other files' errors are a warning count, an unknown name
    (or one whose own document is invalid) an error."""
    for task in result.tasks:
        if task.spec.name == name:
            for diagnostic in result.warnings:
                if diagnostic.path == task.path:
                    click.echo(_diagnostic_line(str(diagnostic), "warning"), err=True)
            if result.errors:
                count = len(result.errors)
                click.echo(
                    f"warning: {count} error{'' if count == 1 else 's'} in other task files "
                    f"under {directory} (reconcile validate lists them)",
                    err=True,
                )
            return task
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


def fire_report(
    loaded: LoadedTask, start: dt.datetime, count: int, anchor: dt.datetime | None = None
) -> dict[str, Any]:
    """The JSON form: times as ISO 8601 with the offset of the task's zone."""
    from reconciler.core.describe import describe
    from reconciler.core.durations import format_duration
    from reconciler.core.schedule import next_fire_times

    spec = loaded.spec
    dropped: list[tuple[dt.datetime, str]] = []
    times = next_fire_times(spec, start, count, anchor, dropped)
    timing = spec.timing
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
        "anchor": anchor.astimezone(spec.tz).isoformat() if anchor is not None else None,
        "spread": format_duration(spec.spread) if spec.spread is not None else None,
        "spread_offset": format_duration(timing.offset) if spec.spread is not None else None,
        "active": spec.active.model_dump(mode="json") if spec.active is not None else None,
        "skip_on": spec.skip_on or [],
        "only_on": spec.only_on or [],
        "skipped": [
            {"time": moment.astimezone(spec.tz).isoformat(), "reason": reason}
            for moment, reason in dropped
        ],
    }


def as_text(report: dict[str, Any], spec: TaskSpec) -> str:
    lines = [f"{report['name']}: {report['schedule']}"]
    if report["description"]:
        lines.append(f"  {report['description']}")
    origin = [f"{report['path']}:{report['line']}"] if report["line"] else []
    if report["crontab"]:
        origin.append(f"crontab {report['crontab']!r}")
    if origin:
        lines.append("  " + "  ".join(origin))
    if report["spread"] is not None:
        lines.append(
            f"  spread {report['spread']}: each time moved by this task's offset "
            f"+{report['spread_offset']}"
        )
    if report["active"] is not None:
        window = report["active"]
        ends = [f"from {window['from']}" if window.get("from") else "", ""]
        ends[1] = f"until {window['until']}" if window.get("until") else ""
        lines.append(f"  active {' '.join(end for end in ends if end)} ({spec.timezone})")
    for kind in ("skip_on", "only_on"):
        if report[kind]:
            lines.append(f"  {kind} calendar {', '.join(report[kind])}")
    if report["anchor"] is not None:
        lines.append(f"  counting from the stored anchor {report['anchor']}, as beat does")
    if not spec.enabled:
        lines.append("  disabled (enabled: false): it fires at these times only once enabled")
    times: list[str] = report["next"]
    if times:
        lines.append(f"next {len(times)} after {report['from']} ({spec.timezone}):")
        for text in times:
            weekday = dt.datetime.fromisoformat(text).strftime("%a")
            lines.append(f"  {text}  {weekday}")
    elif spec.timing.end is not None and spec.timing.end <= dt.datetime.fromisoformat(
        report["from"]
    ):
        lines.append(f"no times after {report['from']}: its active window has ended")
    elif spec.type == TaskType.ASYNC:
        lines.append("no times: it is not on a schedule")
    elif spec.type == TaskType.SCHEDULED and spec.at is not None:
        at = spec.at.astimezone(spec.tz).isoformat()
        lines.append(f"no times after {report['from']}: it fires once, at {at}")
    else:
        lines.append(f"no times after {report['from']}: the crontab never matches a date")
    if report["skipped"]:
        lines.append("skipped by calendars:")
        lines.extend(f"  {each['time']}  {each['reason']}" for each in report["skipped"])
    return "\n".join(lines)


def _diagnostic_line(text: str, severity: str) -> str:
    return f"{severity}: {text}"
