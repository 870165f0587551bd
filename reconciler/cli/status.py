"""``reconcile status [NAME]``: every live task with its schedule, latest execution and next run.

Reads ``reconciler.store.tasks.status_rows`` (one query), the beats' heartbeats and the
sync status (the first line: whether the latest apply attempt applied the task files);
times are shown in each task's own time zone.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.fit import Column, clip, fit_table, output_width, table_width, time_text
from reconciler.cli.history import duration_text
from reconciler.cli.options import (
    beats_expected_option,
    echo_json,
    format_option,
    handle_errors,
    settings_of,
)
from reconciler.errors import StoredSpecUnreadable, UnknownTask
from reconciler.settings import Settings, resolve_beats_expected
from reconciler.vocabulary import TaskType

if TYPE_CHECKING:  # the model and the database load when it runs, not for --help
    from reconciler.core.spec import TaskSpec
    from reconciler.store.heartbeats import BeatState
    from reconciler.store.rollup import DayStats
    from reconciler.store.tasks import StatusRow

# In the order shown; ``keep`` is the order in which they stay on a narrow terminal, and
# ``least`` how narrow a column may be cut (NAME, SCHEDULE, OWNER, SOURCE, LAST STATUS).
COLUMNS = (
    Column("NAME", keep=0, least=14),
    Column("TYPE", keep=7),
    Column("SCHEDULE", keep=1, least=20),
    Column("ENABLED", keep=4),
    Column("OWNER", keep=6, least=8),
    Column("SOURCE", keep=9, least=16),
    Column("NEXT RUN", keep=2),
    Column("LAST QUEUED", keep=5),
    Column("LAST STATUS", keep=3, least=11),
    Column("LAST SUCCESS", keep=8),
)
UNREADABLE = "unreadable: apply the task files again"
STATS_DAYS = 7  # the days of statistics ``status NAME`` shows


@click.command("status")
@settings_of("database_url")
@click.argument("name", required=False)
@beats_expected_option
@format_option("text", "json")
@click.option("--wide", is_flag=True, help="Every column, whole, whatever the terminal's width.")
@handle_errors
def status(
    settings: Settings,
    name: str | None,
    beats_expected: int | None,
    output_format: str,
    wide: bool,
) -> None:
    """Show the tasks (or the one named) with their latest execution and next run."""
    from reconciler.store import heartbeats
    from reconciler.store import tasks as store
    from reconciler.store.database import Database, unavailable_as_error
    from reconciler.store.reads.applies import sync_state
    from reconciler.store.reads.stats import daily_stats, stats_dict

    now = dt.datetime.now(dt.UTC)
    expected = resolve_beats_expected(beats_expected)
    db = Database.open(settings.database_url)
    try:
        with unavailable_as_error(db.engine), db.session() as session:
            rows = store.status_rows(session, name)
            beats = heartbeats.beats(session)
            sync = sync_state(session)
            deleted = name is not None and not rows and store.is_deleted(session, name)
            since = (now - dt.timedelta(days=STATS_DAYS - 1)).date()
            days = daily_stats(session, name, since) if name is not None and rows else []
    finally:
        db.dispose()
    if name is not None and not rows:
        if deleted:
            raise UnknownTask(
                f"task {name!r} was deleted from the task files; its history is kept "
                f"('reconcile history {name}')"
            )
        raise UnknownTask(f"no task named {name!r}; 'reconcile status' lists them")
    tasks = [task_view(row) for row in rows]
    heartbeat = max((beat.last_tick_at for beat in beats), default=None)
    age = (now - heartbeat).total_seconds() if heartbeat is not None else None
    if output_format == "json":
        echo_json(
            {
                "sync": sync.to_dict(now),
                "beat": {
                    "last_tick_at": heartbeat.isoformat() if heartbeat else None,
                    "age_seconds": round(age, 3) if age is not None else None,
                    "alive": sum(beat.alive(now) for beat in beats),
                    "expected": expected,
                    "beats": [beat_json(beat, now) for beat in beats],
                },
                "tasks": [{key: _json(value) for key, value in task.items()} for task in tasks],
                **({"stats": stats_dict(name, days, since)} if name is not None else {}),
            }
        )
        return
    # Text fits the terminal, each cut line ending in '…' (docs/cli.md, "reconcile status").
    width = output_width(wide)
    lines = [sync.line(now), *(f"  {error}" for error in sync.errors())]
    lines.append(f"Beats: {beats_text(beats, expected, now)}")
    if name is not None:
        lines.append("")
        lines.extend(f"{key + ':':<15} {_text(value)}" for key, value in tasks[0].items())
        lines.extend(["", *stats_lines(days)])
    else:
        lines.append(f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}")
        if tasks:
            table_lines, hidden = table(tasks, width)
            lines.extend(["", *table_lines])
            if hidden:
                lines.append(f"(not shown: {', '.join(hidden)}; --wide shows all)")
        problems = [task["problem"] for task in tasks if "problem" in task]
        if problems:
            lines.extend(["", *problems])
    for line in lines:
        click.echo(clip(line, width))


def stats_lines(days: list[DayStats]) -> list[str]:
    """The last days' statistics (docs/tracking.md, "Statistics"), newest first."""
    if not days:
        return [f"No execution finished in the last {STATS_DAYS} days."]
    lines = [
        f"Last {STATS_DAYS} days (UTC):",
        f"  {'DAY':<10}  {'SUCCESS':>7}  {'FAILURE':>7}  {'REVOKED':>7}  {'P50':>8}  "
        f"{'P95':>8}  {'MAX':>8}",
    ]
    for day in reversed(days):
        lines.append(
            f"  {day.day.isoformat():<10}  {day.successes:>7}  {day.failures:>7}  "
            f"{day.revoked:>7}  {_ms(day.duration_p50_ms):>8}  {_ms(day.duration_p95_ms):>8}  "
            f"{_ms(day.duration_max_ms):>8}"
        )
    return lines


def _ms(value: float | None) -> str:
    return duration_text(round(value)) if value is not None else "-"


def task_view(row: StatusRow) -> dict[str, Any]:
    """A task as status shows it. One whose stored definition this version cannot read
    (beat leaves its slots waiting) is shown from its row, times in UTC, with the problem."""
    from reconciler.core.describe import describe, describe_timing, window_ended
    from reconciler.core.spec import stored_spec

    try:
        spec: TaskSpec | None = stored_spec(row.name, row.spec)
    except StoredSpecUnreadable as exc:
        spec, problem = None, str(exc)
    zone = spec.tz if spec is not None else dt.UTC
    view = {
        "name": row.name,
        "type": row.type,
        "schedule": describe(spec) if spec is not None else UNREADABLE,
        "enabled": row.enabled,
        "owner": row.owner,
        "source": f"{row.source_path}:{row.source_line}",
        "next_run_at": _local(row.next_run_at, zone),
        "last_run_at": _local(row.last_queued_at, zone),  # docs/tracking.md, "Last run"
        "last_status": row.last_status,
        "skipped_count": row.skipped_count,
        "missed_count": row.missed_count,
        "calendar_skipped_count": row.calendar_skipped_count,
        # Health: finish times of the newest success and failure, failures since then.
        "last_success_at": _local(row.last_success_at, zone),
        "last_failure_at": _local(row.last_failure_at, zone),
        "consecutive_failures": row.consecutive_failures,
    }
    if spec is None:
        view["problem"] = problem
    elif spec.type == TaskType.PERIODIC:
        timing = describe_timing(spec)
        if timing:
            view["schedule"] = f"{view['schedule']}; {timing}"
        if window_ended(spec, dt.datetime.now(dt.UTC)):
            view["problem"] = (
                f"{row.name}: its active window ended ({spec.active.until if spec.active else ''}"
                f"); it fires no more (move active.until or remove the task)"
            )
    return view


def beats_text(beats: list[BeatState], expected: int | None, now: dt.datetime) -> str:
    """How many beats are alive (of how many expected), and which, with their last tick:
    ``1 of 2 alive: a (0 s ago); not ticking: b (95 s ago)``."""
    alive = [beat for beat in beats if beat.alive(now)]
    stopped = [beat for beat in beats if not beat.alive(now)]
    count = f"{len(alive)} of {expected}" if expected else str(len(alive))
    text = f"{count} alive" if alive or expected else "none alive (is beat running?)"
    if alive:
        text += f": {_ticks(alive, now)}"
    if stopped:
        text += f"; not ticking: {_ticks(stopped, now)}"
    return text


def _ticks(beats: list[BeatState], now: dt.datetime) -> str:
    return ", ".join(f"{beat.name} ({beat.age(now).total_seconds():.0f} s ago)" for beat in beats)


def beat_json(beat: BeatState, now: dt.datetime) -> dict[str, Any]:
    return {
        "name": beat.name,
        "hostname": beat.hostname,
        "pid": beat.pid,
        "started_at": beat.started_at.isoformat(),
        "last_tick_at": beat.last_tick_at.isoformat(),
        "age_seconds": round(beat.age(now).total_seconds(), 3),
        "alive": beat.alive(now),
    }


def table(tasks: list[dict[str, Any]], width: int | None) -> tuple[list[str], list[str]]:
    """The task table within ``width`` and the columns left out. Times shorten first
    (``03-01 09:00 CET``), then columns go by their ``keep`` and long cells are cut."""
    rows = _rows(tasks, short=False)
    if width is not None and table_width(COLUMNS, rows) > width:
        rows = _rows(tasks, short=True)
    return fit_table(COLUMNS, rows, width)


def _rows(tasks: list[dict[str, Any]], short: bool) -> list[list[str]]:
    keys = ("name", "type", "schedule", "enabled", "owner", "source")
    times = ("next_run_at", "last_run_at")
    return [
        [
            *(_text(task[key]) for key in keys),
            *(time_text(task[key], short) for key in times),
            _status(task),
            time_text(task["last_success_at"], short),
        ]
        for task in tasks
    ]


def _status(task: dict[str, Any]) -> str:
    text = _text(task["last_status"])
    extra = [
        f"{task[key]} {label}"
        for key, label in (
            ("consecutive_failures", "failed in a row"),
            ("skipped_count", "skipped"),
            ("missed_count", "missed"),
        )
        if task[key]
    ]
    return f"{text} ({', '.join(extra)})" if extra else text


def _local(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    return value.astimezone(zone) if value is not None else None


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return time_text(value)
    return str(value)
