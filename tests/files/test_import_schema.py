"""The schema line of an imported file names a schema that exists, from the file's folder:
the nearest one of this format above it, else one written beside the tasks directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.files.imports.render import schema_comment
from reconciler.files.schema import SCHEMA_ID, render

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
PAYLOAD = {
    "name": "nightly",
    "task_type": "periodic",
    "celery_task_name": "app.worker.test_celery",
    "crontab_minute": "0",
    "crontab_hour": "1",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_TASKS_DIR", raising=False)
    (tmp_path / "old.json").write_text(json.dumps([PAYLOAD]), encoding="utf-8")
    return tmp_path


def run_import(*extra: str) -> Result:
    result = CliRunner().invoke(main, ["import", "old.json", "--owner", "demo", *extra])
    assert result.exit_code == 0, result.output
    return result


def schema_of(task_file: Path) -> Path:
    """The file the first line names, resolved from the task file's own folder."""
    match = SCHEMA_LINE.match(task_file.read_text(encoding="utf-8").splitlines()[0])
    assert match, task_file
    return (task_file.parent / match.group(1)).resolve()


def test_without_a_schema_it_is_written_beside_the_tasks_directory(project: Path) -> None:
    result = run_import()
    schema = schema_of(project / "tasks.d" / "imported" / "nightly.yaml")
    assert schema == (project / "schemas" / "task.schema.json").resolve()
    assert schema.read_text(encoding="utf-8") == render()  # what `reconcile schema` prints
    assert "wrote schemas/task.schema.json" in result.stderr
    # A second import finds it current and leaves it alone.
    (project / "old.json").write_text(json.dumps([{**PAYLOAD, "name": "other"}]))
    assert "wrote" not in run_import().stderr
    assert schema_of(project / "tasks.d" / "imported" / "other.yaml") == schema


def test_the_nearest_schema_above_is_used_and_a_stale_one_refreshed(project: Path) -> None:
    stale = project / "schemas" / "task.schema.json"
    stale.parent.mkdir()
    stale.write_text(json.dumps({"$id": SCHEMA_ID, "properties": {}}), encoding="utf-8")
    run_import("--tasks-dir", "deploy/prod/tasks.d")
    task_file = project / "deploy" / "prod" / "tasks.d" / "imported" / "nightly.yaml"
    assert task_file.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../../../../schemas/task.schema.json\n"
    )
    assert schema_of(task_file) == stale.resolve()
    assert stale.read_text(encoding="utf-8") == render()
    assert not (project / "deploy" / "prod" / "schemas").exists()


def test_another_projects_schema_of_that_name_is_left_alone(project: Path) -> None:
    theirs = project / "schemas" / "task.schema.json"
    theirs.parent.mkdir()
    theirs.write_text('{"$id": "https://example.org/their-task"}', encoding="utf-8")
    result = run_import()
    assert theirs.read_text(encoding="utf-8") == '{"$id": "https://example.org/their-task"}'
    assert "cannot write" in result.stderr and "reconcile schema > PATH" in result.stderr
    assert (project / "tasks.d" / "imported" / "nightly.yaml").is_file()


def test_in_the_checkout_it_names_the_committed_schema() -> None:
    imported = ROOT / "tasks.d" / "imported"
    line = schema_comment(imported)
    assert line == "# yaml-language-server: $schema=../../schemas/task.schema.json"
    assert (imported / line.split("=", 1)[1]).resolve() == ROOT / "schemas" / "task.schema.json"
