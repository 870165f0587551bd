"""``reconcile status [NAME]``: every live task with its schedule, latest execution and next run.

Reads ``reconciler.store.tasks.status_rows`` (one query), the beats' heartbeats and the
sync status (the first line: whether the latest apply attempt applied the task files);
times are shown in each task's own time zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from reconciler.cli.options import (
    beats_expected_option,
    echo_json,
    format_option,
    handle_errors,
    settings_options,
)
from reconciler.core.describe import describe
from reconciler.core.spec import TaskSpec, stored_spec
from reconciler.errors import StoredSpecUnreadable, UnknownTask
from reconciler.settings import Settings, resolve_beats_expected
from reconciler.store import heartbeats
from reconciler.store import tasks as store
from reconciler.store.database import Database, unavailable_as_error
from reconciler.store.heartbeats import BeatState
from reconciler.store.reads.applies import sync_state

COLUMNS = (
    "NAME",
    "TYPE",
    "SCHEDULE",
    "ENABLED",
    "OWNER",
    "SOURCE",
    "NEXT RUN",
    "LAST QUEUED",
    "LAST STATUS",
    "LAST SUCCESS",
)
UNREADABLE = "unreadable: apply the task files again"


@click.command("status")
@settings_options
@click.argument("name", required=False)
@beats_expected_option
@format_option("text", "json")
@handle_errors
def status(
    settings: Settings, name: str | None, beats_expected: int | None, output_format: str
) -> None:
    """Show the tasks (or the one named) with their latest execution and next run."""
    now = dt.datetime.now(dt.UTC)
    expected = resolve_beats_expected(beats_expected)
    db = Database.open(settings.database_url)
    try:
        with unavailable_as_error(db.engine), db.session() as session:
            rows = store.status_rows(session, name)
            beats = heartbeats.beats(session)
            sync = sync_state(session)
            deleted = name is not None and not rows and store.is_deleted(session, name)
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
            }
        )
        return
    click.echo(sync.line(now))
    for error in sync.errors():
        click.echo(f"  {error}")
    click.echo(f"Beats: {beats_text(beats, expected, now)}")
    if name is not None:
        click.echo("")
        for key, value in tasks[0].items():
            click.echo(f"{key + ':':<15} {_text(value)}")
        return
    click.echo(f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}")
    if tasks:
        click.echo("")
        click.echo(table(tasks))
    problems = [task["problem"] for task in tasks if "problem" in task]
    if problems:
        click.echo("")
        click.echo("\n".join(problems))


def task_view(row: store.StatusRow) -> dict[str, Any]:
    """A task as status shows it. One whose stored definition this version cannot read
    (beat leaves its slots waiting) is shown from its row, times in UTC, with the problem."""
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
        # Health: finish times of the newest success and failure, failures since then.
        "last_success_at": _local(row.last_success_at, zone),
        "last_failure_at": _local(row.last_failure_at, zone),
        "consecutive_failures": row.consecutive_failures,
    }
    if spec is None:
        view["problem"] = problem
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


def table(tasks: list[dict[str, Any]]) -> str:
    keys = ("name", "type", "schedule", "enabled", "owner", "source", "next_run_at", "last_run_at")
    rows = [
        [*(_text(task[key]) for key in keys), _status(task), _text(task["last_success_at"])]
        for task in tasks
    ]
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


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
        return value.strftime("%Y-%m-%d %H:%M:%S %Z")
    return str(value)
