"""Which alerts fire and which clear, decided from a task's health at an instant.

Pure: the notifier (``reconciler.beat.notifier``) reads the rows and passes the clock's
``now``; tests pass their own. Each alert is an *episode* named by a key every beat
derives alike from the rows (docs/beat.md, "Alerts"), so two beats that see the same
condition agree on one alert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from reconciler.core.alerts import Alerts
from reconciler.core.durations import format_duration
from reconciler.core.redact import redact, redact_text


class Condition(StrEnum):
    ON_FAILURE = "on_failure"
    FAILURES_IN_A_ROW = "failures_in_a_row"
    SUCCESS_WITHIN = "success_within"
    MAX_DURATION = "max_duration"
    MISSED = "missed"


class Resolution(StrEnum):
    """Why an alert ended; every one but ``superseded`` and ``baseline`` is announced."""

    CLEARED = "cleared"  # the condition no longer holds
    SUPERSEDED = "superseded"  # a newer alert of the same task and condition carries on
    BASELINE = "baseline"  # a silent record of the counts first seen (``missed``)
    ALERT_REMOVED = "alert removed"  # the task no longer asks for this condition
    TASK_DISABLED = "task disabled"
    TASK_DELETED = "task deleted"


ANNOUNCED = frozenset(
    {
        Resolution.CLEARED,
        Resolution.ALERT_REMOVED,
        Resolution.TASK_DISABLED,
        Resolution.TASK_DELETED,
    }
)
"""Resolutions that send a resolved message."""

ERROR_LIMIT = 2000
"""Characters of an execution's error an alert carries."""


def rules_of(spec: Mapping[str, Any]) -> Alerts | None:
    """A stored spec's effective ``alerts`` (docs/task-files.md); None when it sets none or
    cannot be read (a spec written by another version must not stop the notifier)."""
    raw = spec.get("alerts")
    if not isinstance(raw, Mapping):
        return None
    try:
        rules = Alerts.model_validate(dict(raw))
    except (ValidationError, ValueError):
        return None
    return rules if rules.any else None


@dataclass(frozen=True)
class Health:
    """One task's row as the conditions read it (``tasks``' health columns)."""

    name: str
    owner: str
    enabled: bool
    live: bool
    anchor: dt.datetime  # when its schedule began: created, re-enabled or rescheduled
    last_success_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    consecutive_failures: int = 0
    missed_count: int = 0
    skipped_count: int = 0  # by ``overlap: skip``; a calendar's drops are not counted here
    last_run_at: dt.datetime | None = None


@dataclass(frozen=True)
class Execution:
    """A failed or running execution, as an alert shows it."""

    id: int
    task_name: str
    celery_task_id: str
    status: str
    scheduled_for: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def shown(self) -> dict[str, Any]:
        """The execution in an alert body: arguments and error redacted (core.redact)."""
        return {
            "id": self.id,
            "celery_task_id": self.celery_task_id,
            "status": self.status,
            "scheduled_for": _iso(self.scheduled_for),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": redact_text(self.error[:ERROR_LIMIT]) if self.error else None,
            "args": redact(list(self.args)),
            "kwargs": redact(dict(self.kwargs)),
        }


@dataclass(frozen=True)
class Open:
    """An alert not resolved yet."""

    id: int
    task_name: str
    condition: str
    episode: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fire:
    """A new alert episode to record (and send, unless ``silent``)."""

    task_name: str
    owner: str
    condition: Condition
    episode: str
    since: dt.datetime
    summary: str
    details: dict[str, Any]
    silent: bool = False
    superseded: bool = False  # an older failure of the same round: its message only


@dataclass(frozen=True)
class Clear:
    alert_id: int
    resolution: Resolution


@dataclass
class Verdict:
    fire: list[Fire] = field(default_factory=list)
    clear: list[Clear] = field(default_factory=list)


@dataclass(frozen=True)
class Watched:
    """A task with its rules and what is known of it beyond its row."""

    health: Health
    rules: Alerts
    failures: Sequence[Execution] = ()  # failures not alerted yet, oldest first
    running: Sequence[Execution] = ()  # its started (or retrying) executions
    missed_seen: str | None = None  # the ``missed`` episode last recorded


def missed_episode(health: Health) -> str:
    return f"{health.missed_count}/{health.skipped_count}"


def evaluate(watched: Iterable[Watched], open_alerts: Iterable[Open], now: dt.datetime) -> Verdict:
    """What fires and what clears at ``now``: ``watched`` are the live tasks with rules,
    ``open_alerts`` every unresolved alert (of any task)."""
    verdict = Verdict()
    by_task: dict[str, list[Open]] = {}
    for alert in open_alerts:
        by_task.setdefault(alert.task_name, []).append(alert)
    for task in watched:
        _task(task, by_task.pop(task.health.name, []), now, verdict)
    # Tasks without rules now: deleted, or their alerts removed.
    for alerts in by_task.values():
        verdict.clear += [Clear(alert.id, Resolution.ALERT_REMOVED) for alert in alerts]
    return verdict


def _task(task: Watched, opened: list[Open], now: dt.datetime, verdict: Verdict) -> None:
    health, rules = task.health, task.rules
    if not health.live or not health.enabled:
        gone = Resolution.TASK_DELETED if not health.live else Resolution.TASK_DISABLED
        verdict.clear += [Clear(alert.id, gone) for alert in opened]
        return
    wanted: dict[Condition, list[Fire]] = {}
    if rules.on_failure:
        failures = [_failed(health, run) for run in task.failures]
        # Each failure is sent; only the newest stays open to be resolved.
        wanted[Condition.ON_FAILURE] = [
            dataclasses.replace(fire, superseded=True) for fire in failures[:-1]
        ] + failures[-1:]
    if rules.failures_in_a_row is not None:
        wanted[Condition.FAILURES_IN_A_ROW] = _in_a_row(health, rules.failures_in_a_row)
    if rules.success_within is not None:
        wanted[Condition.SUCCESS_WITHIN] = _no_success(health, rules.success_within, now)
    if rules.max_duration is not None:
        wanted[Condition.MAX_DURATION] = [
            fire
            for run in task.running
            if (fire := _too_long(health, run, rules.max_duration, now)) is not None
        ]
    if rules.missed:
        wanted[Condition.MISSED] = _missed(health, task.missed_seen)
    for condition, fires in wanted.items():
        verdict.fire += fires
        ours = [alert for alert in opened if alert.condition == condition]
        verdict.clear += [
            Clear(alert.id, resolution)
            for alert in ours
            if (resolution := _ends(condition, alert, fires, task)) is not None
        ]
    verdict.clear += [
        Clear(alert.id, Resolution.ALERT_REMOVED)
        for alert in opened
        if alert.condition not in wanted
    ]


def _ends(condition: Condition, alert: Open, fires: list[Fire], task: Watched) -> Resolution | None:
    """Whether an open alert of ``condition`` ends, given what fires now."""
    health = task.health
    episodes = {fire.episode for fire in fires}
    if alert.episode in episodes:
        return None  # fires again now: the same alert, still on
    if condition == Condition.ON_FAILURE:
        finished = _parse(alert.details.get("execution", {}).get("finished_at"))
        succeeded = health.last_success_at
        if succeeded is not None and (finished is None or succeeded > finished):
            return Resolution.CLEARED
        return Resolution.SUPERSEDED if episodes else None
    if condition == Condition.MISSED:
        if episodes:
            return Resolution.SUPERSEDED
        seen = _parse(alert.details.get("last_run_at"))
        fired_since = health.last_run_at is not None and (seen is None or health.last_run_at > seen)
        return Resolution.CLEARED if fired_since else None
    # failures_in_a_row, success_within, max_duration: a state that holds as the same
    # episode, or no longer does.
    return Resolution.CLEARED


def _failed(health: Health, run: Execution) -> Fire:
    since = run.finished_at or run.started_at or health.anchor
    error = f": {redact_text(run.error.splitlines()[0][:200])}" if run.error else ""
    return Fire(
        health.name,
        health.owner,
        Condition.ON_FAILURE,
        str(run.id),
        since,
        f"{health.name} failed{error}",
        {"execution": run.shown()},
    )


def _in_a_row(health: Health, threshold: int) -> list[Fire]:
    if health.consecutive_failures < threshold:
        return []
    # One episode per run of failures: the success it follows names it.
    episode = "after " + (_iso(health.last_success_at) or "no success")
    return [
        Fire(
            health.name,
            health.owner,
            Condition.FAILURES_IN_A_ROW,
            episode,
            health.last_failure_at or health.anchor,
            f"{health.name} failed {health.consecutive_failures} times in a row",
            {
                "threshold": threshold,
                "consecutive_failures": health.consecutive_failures,
                "last_success_at": _iso(health.last_success_at),
                "last_failure_at": _iso(health.last_failure_at),
            },
        )
    ]


def _no_success(health: Health, within: dt.timedelta, now: dt.datetime) -> list[Fire]:
    # Counted from the last success, or from when the schedule began if that is later
    # (a task created, re-enabled or rescheduled gets the full time).
    counted_from = max(health.anchor, health.last_success_at or health.anchor)
    deadline = counted_from + within
    if now <= deadline:
        return []
    succeeded = (
        f"last success {_iso(health.last_success_at)}"
        if health.last_success_at
        else "never succeeded"
    )
    return [
        Fire(
            health.name,
            health.owner,
            Condition.SUCCESS_WITHIN,
            _iso(counted_from) or "",
            deadline,
            f"{health.name} has not succeeded within {format_duration(within)} ({succeeded})",
            {
                "success_within": format_duration(within),
                "last_success_at": _iso(health.last_success_at),
                "counted_from": _iso(counted_from),
            },
        )
    ]


def _too_long(health: Health, run: Execution, limit: dt.timedelta, now: dt.datetime) -> Fire | None:
    if run.started_at is None or now - run.started_at <= limit:
        return None
    return Fire(
        health.name,
        health.owner,
        Condition.MAX_DURATION,
        str(run.id),
        run.started_at + limit,
        f"{health.name} has been running for over {format_duration(limit)}",
        {"max_duration": format_duration(limit), "execution": run.shown()},
    )


def _missed(health: Health, seen: str | None) -> list[Fire]:
    """A new episode when ``missed_count`` or ``skipped_count`` rose since ``seen``.

    Slots a calendar drops are counted in a column of their own, which this never reads:
    the task asked for them (docs/beat.md, "Alerts")."""
    episode = missed_episode(health)
    if seen == episode:
        return []
    details = {
        "missed_count": health.missed_count,
        "skipped_count": health.skipped_count,
        "last_run_at": _iso(health.last_run_at),
    }
    if seen is None:
        # First sight: the counts so far are history, recorded without a message.
        return [_missed_baseline(health, episode, details)]
    before_missed, _, before_skipped = seen.partition("/")
    missed = health.missed_count - _int(before_missed)
    skipped = health.skipped_count - _int(before_skipped)
    parts = [
        f"{n} slot(s) {what}" for n, what in ((missed, "missed"), (skipped, "skipped")) if n > 0
    ]
    if not parts:  # counts went down (a hand edit): a new baseline
        return [_missed_baseline(health, episode, details)]
    details.update(newly_missed=max(missed, 0), newly_skipped=max(skipped, 0))
    return [
        Fire(
            health.name,
            health.owner,
            Condition.MISSED,
            episode,
            health.last_run_at or health.anchor,
            f"{health.name}: {' and '.join(parts)}",
            details,
        )
    ]


def _missed_baseline(health: Health, episode: str, details: dict[str, Any]) -> Fire:
    """The missed counts as they stand, recorded as the baseline without a message."""
    return Fire(
        health.name,
        health.owner,
        Condition.MISSED,
        episode,
        health.anchor,
        "",
        details,
        silent=True,
    )


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _parse(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None
