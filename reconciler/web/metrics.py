"""``/metrics``: counts read from the store at scrape time, in Prometheus text format.

A fresh registry per scrape holds one collector scoped to the caller's owner, so an
owner's token sees only its own tasks' numbers; beat and apply gauges are global.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from reconciler.store.database import Database
from reconciler.store.reads.counts import (
    duplicate_deliveries,
    execution_counts,
    heartbeats,
    last_apply,
    task_counts,
)
from reconciler.store.reads.reader import ReadSession, read

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
            )

        executions, duplicates, tasks, beats, applied = read(self.database, counts)
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

        family = GaugeMetricFamily(
            "reconciler_beat_heartbeat_age_seconds",
            "Seconds since each Beat scheduler's last tick",
            labels=["instance", "hostname"],
        )
        for beat in beats:
            age = (now - beat.last_tick_at).total_seconds()
            family.add_metric([beat.instance, beat.hostname], max(age, 0.0))
        yield family

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


def render(database: Database, owner: str | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(database, owner))
    data: bytes = generate_latest(registry)
    return data
