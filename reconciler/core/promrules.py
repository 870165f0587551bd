"""Prometheus alerting rules for the tasks' ``alerts`` (``reconcile alerts --format
prometheus``, docs/cli.md): one rule per task and condition, against the per-task
metrics ``/metrics`` serves, labelled with ``owner``, ``task`` and ``severity``.

Pure: takes the specs (their effective alerts already resolved by the loader) and
returns the rules file as plain data; the CLI writes it as YAML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from reconciler.core.alerts import Alerts
from reconciler.core.durations import format_duration
from reconciler.core.spec import TaskSpec

MISSED_WINDOW = "1h"
"""How long a missed or skipped slot keeps its rule firing (counters are read by increase)."""

# Per condition: the alert's name, its severity and what it says.
RULES: dict[str, tuple[str, str, str]] = {
    "on_failure": (
        "ReconcilerTaskFailed",
        "warning",
        "the latest execution of {task} failed",
    ),
    "failures_in_a_row": (
        "ReconcilerTaskFailingRepeatedly",
        "critical",
        "{task} failed {{{{ $value }}}} times in a row",
    ),
    "success_within": (
        "ReconcilerTaskNoRecentSuccess",
        "critical",
        "{task} has not succeeded for {{{{ $value | humanizeDuration }}}}",
    ),
    "max_duration": (
        "ReconcilerTaskRunningTooLong",
        "warning",
        "an execution of {task} has been running for {{{{ $value | humanizeDuration }}}}",
    ),
    "missed": (
        "ReconcilerTaskSlotMissed",
        "warning",
        "{task} missed or skipped a slot in the last " + MISSED_WINDOW,
    ),
}


def _seconds(value: dt.timedelta) -> int:
    return int(value.total_seconds())


def expressions(name: str, alerts: Alerts) -> list[tuple[str, str, str]]:
    """(condition, PromQL expression, the limit in words) for each condition set."""
    match = f'{{task="{name}"}}'
    found: list[tuple[str, str, str]] = []
    if alerts.on_failure:
        found.append(("on_failure", f"reconciler_task_consecutive_failures{match} >= 1", "any"))
    if alerts.failures_in_a_row is not None:
        limit = alerts.failures_in_a_row
        found.append(
            (
                "failures_in_a_row",
                f"reconciler_task_consecutive_failures{match} >= {limit}",
                f"{limit} in a row",
            )
        )
    if alerts.success_within is not None:
        # "> 0": a task that never succeeded has no success time to count from.
        found.append(
            (
                "success_within",
                f"time() - (reconciler_task_last_success_timestamp_seconds{match} > 0)"
                f" > {_seconds(alerts.success_within)}",
                format_duration(alerts.success_within),
            )
        )
    if alerts.max_duration is not None:
        found.append(
            (
                "max_duration",
                f"reconciler_task_longest_running_seconds{match} > {_seconds(alerts.max_duration)}",
                format_duration(alerts.max_duration),
            )
        )
    if alerts.missed:
        window = f"[{MISSED_WINDOW}]"
        found.append(
            (
                "missed",
                f"increase(reconciler_task_slots_missed_total{match}{window}) > 0"
                f" or increase(reconciler_task_slots_skipped_total{match}{window}) > 0",
                f"within {MISSED_WINDOW}",
            )
        )
    return found


def literal(text: str) -> str:
    """``text`` as a Go template that prints it as written: Prometheus expands labels and
    annotations as templates, and an owner such as ``ops {{ team }}`` is not one."""
    return text.replace("{{", '{{ "{{" }}')


def rule(spec: TaskSpec, condition: str, expression: str, limit: str) -> dict[str, Any]:
    """One alerting rule; the owner's text is escaped for the template expansion."""
    alert, severity, summary = RULES[condition]
    return {
        "alert": alert,
        "expr": expression,
        "labels": {"owner": literal(spec.owner), "task": spec.name, "severity": severity},
        "annotations": {
            "summary": summary.format(task=spec.name),
            "description": (
                f"Task {spec.name} (owner {{{{ $labels.owner }}}}) alerts on {condition} ({limit})."
            ),
        },
    }


def prometheus_rules(specs: Iterable[TaskSpec]) -> dict[str, Any]:
    """The rules file: a group per owner (in owner order), a rule per task and condition.

    Disabled tasks have none: they do not run, so they would only ever alert."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in sorted(specs, key=lambda s: (s.owner, s.name)):
        if spec.alerts is None or not spec.enabled:
            continue
        rules = groups.setdefault(spec.owner, [])
        for condition, expression, limit in expressions(spec.name, spec.alerts):
            rules.append(rule(spec, condition, expression, limit))
    return {
        "groups": [
            {"name": f"reconciler-tasks-{owner}", "rules": rules} for owner, rules in groups.items()
        ]
    }
