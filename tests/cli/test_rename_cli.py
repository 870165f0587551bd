"""``reconcile --dry-run`` and ``reconcile`` on a rename: the plan's lines, the hint that
suggests ``previous_names``, the JSON and markdown forms, and a refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.cli.planview import render_text
from reconciler.core.plan import make_plan
from tests.core.test_plan import Sourced
from tests.factories import spec, task_yaml


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("RECONCILER_TASKS_DIR", "RECONCILER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "heartbeat.yaml").write_text(task_yaml("heartbeat", interval="10s"))
    (tasks / "keep.yaml").write_text(task_yaml("keep"))
    assert run().exit_code == 0
    (tasks / "heartbeat.yaml").unlink()
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_delete_and_a_create_of_the_same_job_get_a_hint(workdir: Path) -> None:
    (workdir / "tasks.d" / "v2.yaml").write_text(
        task_yaml("heartbeat-v2", interval="10s", description="every 10 s")
    )
    result = run("--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Plan: 1 to create, 0 to update, 1 to delete, 1 unchanged.\n"
        "\n"
        "+ heartbeat-v2 (tasks.d/v2.yaml:1)\n"
        "- heartbeat\n"
        "\n"
        "hint: 'heartbeat-v2' (tasks.d/v2.yaml:1) runs what 'heartbeat' ran, which this plan "
        "deletes; add previous_names: [heartbeat] to 'heartbeat-v2' to rename it and keep its "
        "history\n"
    )


def test_a_rename_plans_and_applies_as_one_action(workdir: Path) -> None:
    (workdir / "tasks.d" / "v2.yaml").write_text(
        task_yaml("heartbeat-v2", interval="20s", previous_names=["heartbeat"])
    )
    result = run("--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Plan: 0 to create, 0 to update, 1 to rename, 0 to delete, 1 unchanged.\n"
        "\n"
        "~ heartbeat -> heartbeat-v2 (tasks.d/v2.yaml:1)\n"
        '    interval: "10s" -> "20s"\n'
    )
    data = json.loads(run("--dry-run", "--format", "json").stdout)
    assert data["rename"] == [
        {
            "name": "heartbeat-v2",
            "from": "heartbeat",
            "path": "tasks.d/v2.yaml",
            "line": 1,
            "revived": False,
            "changes": {"interval": {"old": "10s", "new": "20s"}},
        }
    ]
    assert (data["create"], data["update"], data["delete"]) == ([], [], [])
    markdown = run("--dry-run", "--format", "markdown").stdout
    assert "| ~ | `heartbeat -> heartbeat-v2` | `tasks.d/v2.yaml:1` | `interval` |" in markdown
    applied = run()
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.endswith("Applied: 0 created, 0 updated, 1 renamed, 0 deleted.\n")
    again = run("--dry-run")
    assert again.stdout == "Plan: 0 to create, 0 to update, 0 to delete, 2 unchanged.\n"


def test_a_rename_onto_a_live_task_is_an_error(workdir: Path) -> None:
    (workdir / "tasks.d" / "heartbeat.yaml").write_text(task_yaml("heartbeat", interval="10s"))
    (workdir / "tasks.d" / "v2.yaml").write_text(task_yaml("heartbeat-v2"))
    assert run().exit_code == 0
    (workdir / "tasks.d" / "heartbeat.yaml").unlink()
    (workdir / "tasks.d" / "v2.yaml").write_text(
        task_yaml("heartbeat-v2", previous_names=["heartbeat"])
    )
    result = run("--dry-run")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: tasks.d/v2.yaml:1: previous_names: cannot rename 'heartbeat' to "
        "'heartbeat-v2': both are tasks in the database; drop 'heartbeat' from "
        "previous_names to delete it\n"
    )


def test_a_deleted_task_renamed_says_it_comes_back() -> None:
    new = spec("heartbeat-v2", previous_names=["heartbeat"])
    plan = make_plan([Sourced(new, "tasks.d/v2.yaml", 1)], [], {"heartbeat"})
    assert render_text(plan) == (
        "Plan: 0 to create, 0 to update, 1 to rename, 0 to delete, 0 unchanged.\n"
        "\n"
        "~ heartbeat -> heartbeat-v2 (tasks.d/v2.yaml:1)\n"
        "    (a deleted task: it comes back under this name with its history)"
    )
