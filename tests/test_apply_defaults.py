"""Applying the defaults document, on SQLite and PostgreSQL: the effective alerts stored in
each task's spec, an update planned (with its reason) for every task whose effective
alerts a change of the defaults changes, and ``notify`` written to ``notify_targets``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from reconciler.apply import reconcile
from reconciler.cli.planview import render_text
from reconciler.store.database import Database
from reconciler.store.notify import read_targets
from reconciler.store.tables import Task
from tests.factories import task_yaml


def stored_alerts(db: Database) -> dict[str, Any]:
    with db.session() as session:
        rows = session.execute(select(Task.name, Task.spec).order_by(Task.name))
        return {name: spec.get("alerts") for name, spec in rows}


def targets(db: Database) -> dict[str, dict[str, Any]]:
    with db.session() as session:
        return read_targets(session)


def write(tasks: Path, defaults: str | None) -> None:
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "inherits.yaml").write_text(task_yaml("inherits"))
    (tasks / "own.yaml").write_text(task_yaml("own", alerts={"on_failure": True}))
    (tasks / "plain.yaml").write_text(task_yaml("plain", owner="ops"))
    (tasks / "quiet.yaml").write_text(task_yaml("quiet", alerts={}))
    path = tasks / "defaults.yaml"
    if defaults is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(defaults)


FIRST = """\
kind: defaults
alerts: {failures_in_a_row: 3}
notify:
  billing: {webhook_url_env: BILLING_ALERTS_URL, format: slack}
"""
ALERTS_OFF_ALL = {"on_failure": False, "success_within": None, "max_duration": None}


def test_defaults_are_applied_and_their_changes_planned(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, None)
    reconcile(db, tasks)
    assert stored_alerts(db) == {
        "inherits": None,
        "own": {**ALERTS_OFF_ALL, "on_failure": True, "failures_in_a_row": None, "missed": False},
        "plain": None,
        "quiet": None,
    }
    assert targets(db) == {}

    write(tasks, FIRST)
    result = reconcile(db, tasks)
    # Tasks with alerts of their own (or `alerts: {}`) are not touched by the defaults.
    assert [c.name for c in result.plan.updates] == ["inherits", "plain"]
    assert result.plan.summary == (
        "Plan: 0 to create, 2 to update, 0 to delete, 2 unchanged. Notify: 1 owner to change."
    )
    inherited = {**ALERTS_OFF_ALL, "failures_in_a_row": 3, "missed": False}
    assert stored_alerts(db)["inherits"] == inherited
    assert stored_alerts(db)["plain"] == inherited
    assert targets(db) == {"billing": {"webhook_url_env": "BILLING_ALERTS_URL", "format": "slack"}}

    (tasks / "defaults.yaml").write_text(
        FIRST.replace("failures_in_a_row: 3", "failures_in_a_row: 5").replace("slack", "json")
        + "  ops: {webhook_url_env: OPS_ALERTS_URL}\n"
    )
    plan = reconcile(db, tasks, dry_run=True).plan
    assert render_text(plan).splitlines() == [
        "Plan: 0 to create, 2 to update, 0 to delete, 2 unchanged. Notify: 2 owners to change.",
        "",
        f"~ inherits ({tasks}/inherits.yaml:1)",
        f"    alerts.failures_in_a_row: 3 -> 5 (from the defaults at {tasks}/defaults.yaml:1)",
        f"~ plain ({tasks}/plain.yaml:1)",
        f"    alerts.failures_in_a_row: 3 -> 5 (from the defaults at {tasks}/defaults.yaml:1)",
        '~ notify billing: {"format": "slack", "webhook_url_env": "BILLING_ALERTS_URL"} -> '
        '{"format": "json", "webhook_url_env": "BILLING_ALERTS_URL"}',
        '~ notify ops: null -> {"format": "json", "webhook_url_env": "OPS_ALERTS_URL"}',
    ]
    assert plan.to_dict()["update"][0]["changes"] == {
        "alerts.failures_in_a_row": {
            "old": 3,
            "new": 5,
            "source": f"the defaults at {tasks}/defaults.yaml:1",
        }
    }
    result = reconcile(db, tasks)
    assert result.applied
    assert stored_alerts(db)["plain"]["failures_in_a_row"] == 5
    assert set(targets(db)) == {"billing", "ops"}
    assert not reconcile(db, tasks).plan  # applied: nothing left to do

    # Only notify changes: still a plan, applied on its own.
    (tasks / "defaults.yaml").write_text(
        FIRST.replace("failures_in_a_row: 3", "failures_in_a_row: 5")
    )
    result = reconcile(db, tasks)
    assert result.applied and not result.plan.updates
    assert [n.owner for n in result.plan.notify] == ["billing", "ops"]
    assert targets(db) == {"billing": {"webhook_url_env": "BILLING_ALERTS_URL", "format": "slack"}}

    # Without the defaults document, the inherited alerts and every target go.
    write(tasks, None)
    result = reconcile(db, tasks)
    assert [c.name for c in result.plan.updates] == ["inherits", "plain"]
    assert stored_alerts(db)["inherits"] is None and targets(db) == {}


def test_specs_without_alerts_keep_their_stored_text(db: Database, tmp_path: Path) -> None:
    # A task that sets no alerts stores the same JSON as before alerts existed, so an
    # upgrade plans no update of every task.
    tasks = tmp_path / "tasks.d"
    write(tasks, None)
    reconcile(db, tasks)
    with db.session() as session:
        spec = session.scalar(select(Task.spec).where(Task.name == "plain"))
    assert spec is not None and "alerts" not in spec
    assert not reconcile(db, tasks).plan
