"""``/metrics``: counts read from the store at scrape time, in Prometheus text format.

A fresh registry per scrape holds one collector scoped to the caller's owner, so an
owner's token sees only its own tasks' numbers; beat and apply gauges are global.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from reconciler.errors import ConfigError
from reconciler.settings import resolve_beats_expected
from reconciler.store.database import Database
from reconciler.store.reads.applies import attempted_at, sync_state
from reconciler.store.reads.counts import (
    Fleet,
    duplicate_deliveries,
    execution_counts,
    heartbeats,
    last_apply,
    task_counts,
)
from reconciler.store.reads.health import task_health
from reconciler.store.reads.reader import ReadSession, read
from reconciler.store.reads.stats import latest_days

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Aged(Protocol):
    """A beat's or a watch loop's heartbeat: its stable name and how old it is."""

    @property
    def name(self) -> str: ...

    def age(self, now: dt.datetime) -> dt.timedelta: ...


class StoreCollector:
    """Reads the counts when Prometheus scrapes, so nothing is kept in memory between."""

    def __init__(
        self,
        database: Database,
        owner: str | None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.database = database
        self.owner = owner
        self.now = now

    def collect(self) -> Iterator[Any]:
        def counts(session: ReadSession) -> tuple[Any, ...]:
            return (
                execution_counts(session, owner=self.owner),
                duplicate_deliveries(session, owner=self.owner),
                task_counts(session, owner=self.owner),
                heartbeats(session),
                last_apply(session),
                sync_state(session),
            )

        executions, duplicates, tasks, beats, applied, sync = read(self.database, counts)
        now = self.now()

        family = GaugeMetricFamily(
            "reconciler_executions",
            "Recorded executions by task and status",
            labels=["task", "status"],
        )
        for task, status, count in executions:
            family.add_metric([task, status], count)
        yield family

        family = GaugeMetricFamily(
            "reconciler_duplicate_deliveries",
            "Deliveries workers did not run: their execution had started or finished elsewhere",
            labels=["task"],
        )
        for task, count in duplicates:
            family.add_metric([task], count)
        yield family

        family = GaugeMetricFamily(
            "reconciler_tasks", "Live tasks by type and enabled", labels=["type", "enabled"]
        )
        for type_, enabled, count in tasks:
            family.add_metric([type_, "true" if enabled else "false"], count)
        yield family

        yield from fleet_metrics(beats, now)

        if applied is not None:
            yield GaugeMetricFamily(
                "reconciler_last_apply_timestamp_seconds",
                "When the last apply ran (Unix time)",
                value=applied.applied_at.timestamp(),
            )
            family = GaugeMetricFamily(
                "reconciler_last_apply_tasks",
                "Tasks created, updated, deleted and unchanged by the last apply",
                labels=["change"],
            )
            for change in ("created", "updated", "deleted", "unchanged"):
                family.add_metric([change], getattr(applied, change) or 0)
            yield family
            yield GaugeMetricFamily(
                "reconciler_last_apply_duration_seconds",
                "How long the last apply took",
                value=(applied.duration_ms or 0) / 1000,
            )

        # The sync status (docs/plan-and-apply.md): global, like the last apply.
        if sync.latest is not None:
            yield GaugeMetricFamily(
                "reconciler_apply_last_attempt_timestamp_seconds",
                "When the latest recorded apply attempt was made, applied or not (Unix time)",
                value=attempted_at(sync.latest).timestamp(),
            )
        if sync.last_applied is not None:
            yield GaugeMetricFamily(
                "reconciler_apply_last_success_timestamp_seconds",
                "When the task files were last applied (Unix time)",
                value=sync.last_applied.applied_at.timestamp(),
            )
        yield GaugeMetricFamily(
            "reconciler_files_in_sync",
            "1 when the latest apply attempt applied the task files, else 0",
            value=1 if sync.in_sync else 0,
        )


def fleet_metrics(fleet: Fleet, now: dt.datetime) -> Iterator[Any]:
    """Beats and watch loops by their stable names (docs/http-api.md, "Metrics")."""
    try:
        expected = resolve_beats_expected()
    except ConfigError:  # a bad RECONCILER_BEATS_EXPECTED of this process: not served
        expected = None
    yield GaugeMetricFamily(
        "reconciler_beats_alive",
        "Beats whose last tick is recent",
        value=sum(1 for beat in fleet.beats if beat.alive(now)),
    )
    if expected is not None:
        yield GaugeMetricFamily(
            "reconciler_beats_expected", "How many beats should be alive", value=expected
        )
    yield _ages(
        "reconciler_beat_heartbeat_age_seconds",
        "Seconds since each beat's last tick, by its stable name",
        "beat",
        fleet.beats,
        now,
    )
    yield _ages(
        "reconciler_watch_heartbeat_age_seconds",
        "Seconds since each watch loop's last heartbeat, by its stable name",
        "watch",
        fleet.watches,
        now,
    )
    family = GaugeMetricFamily(
        "reconciler_watch_git_pull_failures",
        "git pull runs of each watch loop that failed in a row (0: the last worked)",
        labels=["watch"],
    )
    for watch in fleet.watches:
        if watch.git_pull_every is not None:
            family.add_metric([watch.name], watch.pull_failures)
    yield family


# Per-task families: (name, type, help). Written as text directly: with 10,000 tasks
# prometheus_client's exposition of these 70,000 samples cost several times their query.
TASK_FAMILIES = (
    ("reconciler_task_last_success_timestamp_seconds", "gauge",
     "When the task's newest success finished (Unix time); absent before its first"),
    ("reconciler_task_last_failure_timestamp_seconds", "gauge",
     "When the task's newest failure finished (Unix time); absent before its first"),
    ("reconciler_task_consecutive_failures", "gauge",
     "Failures that finished after the task's last success (retries and revokes do not count)"),
    ("reconciler_task_oldest_pending_age_seconds", "gauge",
     "Seconds the task's oldest pending execution has waited since queued (0: none)"),
    ("reconciler_task_longest_running_seconds", "gauge",
     "Seconds the task's longest running execution has run (0: none)"),
    ("reconciler_task_slots_missed_total", "counter", "Slots beat did not fire in time"),
    ("reconciler_task_slots_skipped_total", "counter",
     "Slots skipped by the overlap policy (overlap: skip)"),
    ("reconciler_task_slots_calendar_skipped_total", "counter",
     "Slots the task's calendars dropped (skip_on, only_on), by design"),
)  # fmt: skip


def _ages(
    name: str, documentation: str, label: str, items: Iterable[_Aged], now: dt.datetime
) -> GaugeMetricFamily:
    """One gauge of heartbeat ages in seconds, labelled by each beat's or watch's name."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for item in items:
        family.add_metric([item.name], item.age(now).total_seconds())
    return family


def task_health_text(
    database: Database, owner: str | None, now: dt.datetime | None = None
) -> bytes:
    """Per-task health (docs/http-api.md, "Metrics") in Prometheus text format, labelled
    ``task`` and ``owner``: one query over the task rows, where the database keeps the
    health, and the few pending and started executions."""
    rows = read(database, lambda session: task_health(session, owner=owner))
    now = now or dt.datetime.now(dt.UTC)
    columns: list[list[str]] = [[] for _ in TASK_FAMILIES]
    for row in rows:
        labels = f'{{owner="{_escaped(row.owner)}",task="{_escaped(row.name)}"}} '
        values = (
            None if row.last_success_at is None else repr(row.last_success_at.timestamp()),
            None if row.last_failure_at is None else repr(row.last_failure_at.timestamp()),
            str(row.consecutive_failures),
            _age(now, row.oldest_pending_at),
            _age(now, row.oldest_started_at),
            str(row.missed_count),
            str(row.skipped_count),
            str(row.calendar_skipped_count),
        )
        for lines, value in zip(columns, values, strict=True):
            if value is not None:
                lines.append(f"{labels}{value}\n")
    out = []
    for (name, kind, help_), lines in zip(TASK_FAMILIES, columns, strict=True):
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
        out.extend(name + line for line in lines)
    return "".join(out).encode()


def _escaped(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _age(now: dt.datetime, since: dt.datetime | None) -> str:
    return "0" if since is None else repr(max((now - since).total_seconds(), 0.0))


def render(database: Database, owner: str | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(database, owner))
    data: bytes = generate_latest(registry)
    return data + task_health_text(database, owner) + task_stats_text(database, owner)


STATS_FAMILIES = (
    ("reconciler_task_day_executions", "gauge",
     "Executions that finished on the last complete UTC day, by final status"),
    ("reconciler_task_day_duration_seconds", "gauge",
     "Duration of the last complete UTC day's successes and failures (quantile 0.5, 0.95, 1)"),
)  # fmt: skip


def task_stats_text(database: Database, owner: str | None) -> bytes:
    """Each task's statistics of the last rolled-up day (docs/http-api.md, "Metrics"), read
    from the daily statistics: one row per task, whatever the history's size."""

    counts: list[str] = []
    durations: list[str] = []
    for name, task_owner, day in read(database, lambda session: latest_days(session, owner)):
        labels = f'owner="{_escaped(task_owner)}",task="{_escaped(name)}"'
        for status, value in (
            ("success", day.successes),
            ("failure", day.failures),
            ("revoked", day.revoked),
        ):
            counts.append(f'{{{labels},status="{status}"}} {value}\n')
        for quantile, ms in (
            ("0.5", day.duration_p50_ms),
            ("0.95", day.duration_p95_ms),
            ("1", day.duration_max_ms),
        ):
            if ms is not None:
                durations.append(f'{{{labels},quantile="{quantile}"}} {ms / 1000!r}\n')
    out = []
    for (name, kind, help_), lines in zip(STATS_FAMILIES, (counts, durations), strict=True):
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
        out.extend(name + line for line in lines)
    return "".join(out).encode()
