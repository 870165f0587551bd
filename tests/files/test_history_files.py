"""``history:`` on a task and in the defaults document: carried into each task's spec,
its own as a whole else the defaults', and refusals located at the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.retention import History, policy_of
from reconciler.files.loader import LoadResult
from tests.files.test_alerts_files import TASK, lines, load, tasks  # noqa: F401


def test_history_own_else_defaults(tasks: Path) -> None:  # noqa: F811
    result: LoadResult = load(
        tasks,
        {
            "defaults.yaml": "kind: defaults\nhistory: {keep_days: 30}\n",
            "inherits.yaml": TASK.format(name="inherits"),
            "own.yaml": TASK.format(name="own") + "history: {keep_last: 200}\n",
        },
    )
    assert lines(result) == []
    by_name = {task.spec.name: task for task in result.tasks}
    assert by_name["inherits"].spec.history == History(keep_days=30)
    assert by_name["inherits"].inherited == (("history", "tasks.d/defaults.yaml:1"),)
    assert by_name["own"].spec.history == History(keep_last=200)
    stored = by_name["own"].spec.canonical()["history"]
    assert stored == {"keep_days": None, "keep_last": 200} or stored == {"keep_last": 200}
    # Unset parts fall back to RECONCILER_HISTORY_KEEP's days and keep_last 0.
    assert policy_of(stored, 45).keep_days == 45
    assert policy_of(by_name["inherits"].spec.canonical()["history"], 45).keep_days == 30


def test_a_task_without_history_keeps_its_stored_text(tasks: Path) -> None:  # noqa: F811
    result = load(tasks, {"plain.yaml": TASK.format(name="plain")})
    assert "history" not in result.tasks[0].spec.canonical()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("history: {keep_days: 0}\n", "6:22: history.keep_days: must be at least 1, got 0"),
        ("history: {keep_day: 3}\n", "6:11: history.keep_day: unknown field"),
        ("history: {keep_last: -1}\n", "6:22: history.keep_last: must be at least 0, got -1"),
    ],
)
def test_history_refusals_are_located(tasks: Path, extra: str, expected: str) -> None:  # noqa: F811
    result = load(tasks, {"t.yaml": TASK.format(name="t") + extra})
    assert lines(result) == [f"tasks.d/t.yaml:{expected}"]
