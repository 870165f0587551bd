"""Renames in the plan (pure): ``previous_names`` against the stored rows, live and
deleted, the refusals, and the hint for a delete and a create of the same job."""

from __future__ import annotations

import pytest

from reconciler.core.plan import FieldChange, Op, RenameHint, RenameRefused, make_plan
from reconciler.core.spec import TaskSpec
from tests.core.test_plan import Sourced, stored
from tests.factories import spec

OLD = spec("heartbeat", interval="10s")


def renamed(name: str = "heartbeat-v2", **fields: object) -> Sourced:
    return Sourced(spec(name, **{"interval": "10s", "previous_names": ["heartbeat"], **fields}))


def test_a_rename_is_one_action_not_a_delete_and_a_create() -> None:
    plan = make_plan([renamed(), Sourced(spec("keep"))], [stored(OLD), stored(spec("keep"))])
    assert plan
    (change,) = plan.renames
    assert (change.op, change.previous, change.name, change.fields) == (
        Op.RENAME,
        "heartbeat",
        "heartbeat-v2",
        (),
    )
    assert not change.revived and not change.schedule_changed
    assert (plan.creates, plan.updates, plan.deletes) == ((), (), ())
    assert plan.summary == "Plan: 0 to create, 0 to update, 1 to rename, 0 to delete, 1 unchanged."
    assert plan.existing == 2 and not plan.is_mass_delete()
    assert plan.changes == (change,)


def test_previous_names_are_not_part_of_the_stored_definition() -> None:
    with_names = spec("heartbeat-v2", interval="10s", previous_names=["heartbeat"])
    assert with_names.model_dump_json() == spec("heartbeat-v2", interval="10s").model_dump_json()
    # Once renamed, the file keeps previous_names and the plan has nothing to do.
    plan = make_plan([renamed()], [stored(spec("heartbeat-v2", interval="10s"))])
    assert not plan and plan.unchanged == 1


def test_a_rename_and_an_update_in_one_action() -> None:
    plan = make_plan([renamed(interval="20s", owner="ops")], [stored(OLD)])
    (change,) = plan.renames
    assert change.fields == (
        FieldChange("owner", "billing", "ops"),
        FieldChange("interval", "10s", "20s"),
    )
    assert change.schedule_changed
    assert plan.to_dict()["rename"] == [
        {
            "name": "heartbeat-v2",
            "from": "heartbeat",
            "path": "tasks.d/a.yaml",
            "line": 1,
            "revived": False,
            "changes": {
                "owner": {"old": "billing", "new": "ops"},
                "interval": {"old": "10s", "new": "20s"},
            },
        }
    ]


def test_a_new_name_moves_a_spread_and_so_restarts_the_schedule() -> None:
    old = spec("heartbeat", interval="1h", spread="10m")
    plan = make_plan([renamed(interval="1h", spread="10m")], [stored(old)])
    (change,) = plan.renames
    (moved,) = change.fields
    assert moved.field == "spread" and moved.old != moved.new
    assert str(moved.old).startswith("10m (offset ") and str(moved.new).startswith("10m (offset ")
    assert change.schedule_changed


def test_a_deleted_task_is_renamed_and_comes_back() -> None:
    plan = make_plan([renamed()], [], deleted={"heartbeat"})
    (change,) = plan.renames
    assert (change.previous, change.revived, change.fields) == ("heartbeat", True, ())
    assert plan.existing == 0 and plan.creates == ()


def test_the_first_listed_name_with_a_row_is_taken() -> None:
    names = ["gone", "heartbeat", "older"]
    plan = make_plan([renamed(previous_names=names)], [stored(OLD)], deleted={"older"})
    assert [c.previous for c in plan.renames] == ["heartbeat"]  # a live row first
    plan = make_plan([renamed(previous_names=names)], [], deleted={"older", "heartbeat"})
    assert [(c.previous, c.revived) for c in plan.renames] == [("heartbeat", True)]
    plan = make_plan([renamed(previous_names=["gone"])], [])
    assert [c.name for c in plan.creates] == ["heartbeat-v2"] and not plan.renames


def test_a_new_name_that_has_a_row_is_no_rename() -> None:
    # Its own deleted row comes back (a plain create); the old one's history stays put.
    plan = make_plan([renamed()], [], deleted={"heartbeat", "heartbeat-v2"})
    assert [c.name for c in plan.creates] == ["heartbeat-v2"] and not plan.renames


@pytest.mark.parametrize(
    ("current", "deleted", "message"),
    [
        (
            [OLD, spec("heartbeat-v2")],
            set(),
            "tasks.d/a.yaml:1: previous_names: cannot rename 'heartbeat' to 'heartbeat-v2': "
            "both are tasks in the database; drop 'heartbeat' from previous_names to delete it",
        ),
        (
            [OLD],
            {"heartbeat-v2"},
            "tasks.d/a.yaml:1: previous_names: cannot rename 'heartbeat' to 'heartbeat-v2': "
            "the database keeps the history of a deleted task 'heartbeat-v2'; choose another "
            "name, or drop 'heartbeat' from previous_names",
        ),
        (
            [OLD, spec("hb")],
            set(),
            "tasks.d/a.yaml:1: previous_names: cannot rename 'hb' and 'heartbeat' to "
            "'heartbeat-v2': each is a task in the database with a history of its own; list "
            "only the one 'heartbeat-v2' continues",
        ),
    ],
)
def test_renames_the_rows_do_not_allow_are_refused(
    current: list[TaskSpec], deleted: set[str], message: str
) -> None:
    rows = [stored(task) for task in current]
    with pytest.raises(RenameRefused) as info:
        make_plan([renamed(previous_names=["hb", "heartbeat"])], rows, deleted)
    assert str(info.value) == message


def test_a_delete_and_a_create_of_the_same_job_are_suggested_as_a_rename() -> None:
    new = Sourced(spec("hb2", interval="10s", description="now documented"), "tasks.d/b.yaml", 3)
    plan = make_plan(
        [new, Sourced(spec("other", crontab="5 * * * *"))], [stored(OLD), stored(spec("gone"))]
    )
    assert plan.hints == (RenameHint("heartbeat", "hb2", "tasks.d/b.yaml", 3),)
    assert plan.hints[0].text == (
        "'hb2' (tasks.d/b.yaml:3) runs what 'heartbeat' ran, which this plan deletes; add "
        "previous_names: [heartbeat] to 'hb2' to rename it and keep its history"
    )
    assert plan.to_dict()["hints"] == [
        {"old": "heartbeat", "new": "hb2", "text": plan.hints[0].text}
    ]


def test_no_hint_for_another_job_or_an_ambiguous_pair() -> None:
    other_args = Sourced(spec("hb2", interval="10s", args=[1]))
    assert make_plan([other_args], [stored(OLD)]).hints == ()
    two = [Sourced(spec("hb2", interval="10s")), Sourced(spec("hb3", interval="10s"))]
    assert make_plan(two, [stored(OLD)]).hints == ()
    plan = make_plan([Sourced(spec("hb2", interval="10s"))], [stored(OLD)])
    assert "hints" in plan.to_dict()
    assert "hints" not in make_plan([renamed()], [stored(OLD)]).to_dict()
