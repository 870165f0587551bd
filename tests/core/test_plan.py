"""The plan: pure diffing of desired task specs against stored rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.core.plan import COLUMN_FIELDS, Current, FieldChange, Op, Plan, make_plan
from reconciler.core.spec import TaskSpec
from tests.factories import spec


@dataclass(frozen=True)
class Sourced:
    spec: TaskSpec
    path: str = "tasks.d/a.yaml"
    line: int = 1


def stored(task: TaskSpec, path: str = "tasks.d/a.yaml", line: int = 1, **drift: Any) -> Current:
    canonical = {**task.canonical(), **drift}
    columns = {name: getattr(task, name) for name in COLUMN_FIELDS}
    text = task.model_dump_json() if not drift else json.dumps(canonical)
    return Current(task.name, text, task.content_hash, path, line, columns)


def test_empty_plan_is_falsy() -> None:
    plan = make_plan([], [])
    assert not plan
    assert plan.summary == "Plan: 0 to create, 0 to update, 0 to delete, 0 unchanged."
    assert plan.to_dict() == {"create": [], "update": [], "delete": [], "unchanged": 0}


def test_creates_updates_deletes_and_unchanged() -> None:
    keep, edit, new = spec("keep"), spec("edit"), spec("new")
    plan = make_plan(
        [Sourced(keep), Sourced(spec("edit", crontab="0 2 * * *"), "b.yaml", 4), Sourced(new)],
        [stored(keep), stored(edit), stored(spec("gone"))],
    )
    assert plan
    assert [c.name for c in plan.creates] == ["new"]
    assert [c.name for c in plan.updates] == ["edit"]
    assert [c.name for c in plan.deletes] == ["gone"]
    assert plan.unchanged == 1
    assert plan.summary == "Plan: 1 to create, 1 to update, 1 to delete, 1 unchanged."
    update = plan.updates[0]
    assert update.op is Op.UPDATE
    assert (update.path, update.line) == ("b.yaml", 4)
    assert update.fields == (FieldChange("crontab", "0 1 * * *", "0 2 * * *"),)
    assert update.schedule_changed


def test_json_form() -> None:
    new = spec("new")
    plan = make_plan(
        [Sourced(new, "x.yaml", 3), Sourced(spec("edit", owner="ops"))],
        [stored(spec("edit")), stored(spec("gone"))],
    )
    data = plan.to_dict()
    assert data["create"] == [{"name": "new", "path": "x.yaml", "line": 3, "spec": new.canonical()}]
    assert data["update"] == [
        {"name": "edit", "changes": {"owner": {"old": "billing", "new": "ops"}}}
    ]
    assert data["delete"] == [{"name": "gone"}]
    assert data["unchanged"] == 0


def test_nested_fields_are_diffed_one_by_one() -> None:
    old = spec("t", options={"queue": "a", "priority": 1})
    new = spec("t", options={"queue": "b", "priority": 1}, kwargs={"region": "eu"})
    plan = make_plan([Sourced(new)], [stored(old)])
    fields = plan.updates[0].fields
    assert FieldChange("options.queue", "a", "b") in fields
    assert FieldChange("kwargs", {}, {"region": "eu"}) in fields
    assert not plan.updates[0].schedule_changed


def test_schedule_type_switch_shows_both_fields() -> None:
    old = spec("t")
    new = spec("t", crontab=None, interval={"minutes": 5})
    fields = make_plan([Sourced(new)], [stored(old)]).updates[0].fields
    assert FieldChange("crontab", "0 1 * * *", None) in fields
    assert FieldChange("interval", None, "5m") in fields


def test_moving_a_task_is_not_an_update_but_a_relocation() -> None:
    task = spec("t")
    plan = make_plan([Sourced(task, "other.yaml", 9)], [stored(task, "a.yaml", 1)])
    assert not plan
    assert plan.unchanged == 1
    assert [(r.name, r.path, r.line) for r in plan.relocations] == [("t", "other.yaml", 9)]


def test_drift_in_the_stored_spec_is_an_update_back() -> None:
    task = spec("t")
    plan = make_plan(
        [Sourced(task)],
        [
            stored(
                task,
                crontab={
                    "minute": "5",
                    "hour": "*",
                    "day_of_month": "*",
                    "month_of_year": "*",
                    "day_of_week": "*",
                },
            )
        ],
    )
    assert [c.name for c in plan.updates] == ["t"]
    assert plan.updates[0].fields == (FieldChange("crontab", "5 * * * *", "0 1 * * *"),)


def test_drift_in_a_column_is_an_update_back() -> None:
    task = spec("t")
    row = stored(task)
    row = Current(
        row.name,
        row.spec_json,
        row.content_hash,
        row.source_path,
        row.source_line,
        {**row.columns, "enabled": False},
    )
    plan = make_plan([Sourced(task)], [row])
    assert plan.updates[0].fields == (FieldChange("enabled", False, True),)
    assert plan.updates[0].schedule_changed


def test_a_wrong_stored_hash_is_drift_once_the_text_differs() -> None:
    task = spec("t")
    row = stored(task)
    # Byte-identical stored text is trusted as is (the fast path) ...
    same_text = Current(row.name, row.spec_json, "0" * 64, "tasks.d/a.yaml", 1, row.columns)
    assert not make_plan([Sourced(task)], [same_text])
    # ... otherwise the hash is checked as well.
    other_text = json.dumps(task.canonical(), indent=1)
    row = Current(row.name, other_text, "0" * 64, "tasks.d/a.yaml", 1, row.columns)
    plan = make_plan([Sourced(task)], [row])
    assert plan.updates[0].fields == (FieldChange("content_hash", "0" * 64, task.content_hash),)


def test_create_carries_the_same_hash_as_the_spec() -> None:
    task = spec("t", kwargs={"b": 1, "a": [1, 2]})
    change = make_plan([Sourced(task)], []).creates[0]
    assert change.content_hash == task.content_hash
    assert change.canonical == task.canonical()


@pytest.mark.parametrize(
    ("existing", "deletes", "mass"),
    [(0, 0, False), (1, 1, True), (2, 1, False), (3, 2, True), (4, 2, False), (10, 6, True)],
)
def test_mass_delete_rule(existing: int, deletes: int, mass: bool) -> None:
    rows = [stored(spec(f"t{i}")) for i in range(existing)]
    keep = [Sourced(spec(f"t{i}")) for i in range(existing - deletes)]
    plan = make_plan(keep, rows)
    assert len(plan.deletes) == deletes
    assert plan.existing == existing
    assert plan.is_mass_delete() is mass


def test_plan_is_pure() -> None:
    import subprocess
    import sys

    code = (
        "import sys, reconciler.core.plan; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'celery', 'click')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_plan_type_is_small_and_frozen() -> None:
    plan = Plan()
    with pytest.raises(AttributeError):
        plan.unchanged = 3  # type: ignore[misc]


def test_same_spec_in_another_json_form_is_unchanged() -> None:
    task = spec("t", kwargs={"b": 1, "a": 2})
    row = stored(task)
    reordered = json.dumps(dict(reversed(list(task.canonical().items()))))
    row = Current(
        row.name, reordered, row.content_hash, row.source_path, row.source_line, row.columns
    )
    assert not make_plan([Sourced(task)], [row])
