"""``reconcile apply`` / ``reconcile --dry-run``: output formats, exit codes and errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.cli.planview import progress_bar, render_text, use_colour
from reconciler.core.plan import make_plan
from reconciler.store import tasks as store
from reconciler.store.database import Database
from tests.core.test_plan import Sourced
from tests.factories import spec, task_yaml, write_tasks


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name in ("RECONCILER_TASKS_DIR", "RECONCILER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    write_tasks(tmp_path / "tasks.d", ["alpha", "beta", "gamma"])
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_dry_run_prints_the_plan_and_writes_nothing(workdir: Path) -> None:
    result = run("--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Plan: 3 to create, 0 to update, 0 to delete, 0 unchanged.\n"
        "\n"
        "+ alpha (tasks.d/alpha.yaml:1)\n"
        "+ beta (tasks.d/beta.yaml:1)\n"
        "+ gamma (tasks.d/gamma.yaml:1)\n"
    )
    assert not (workdir / ".reconciler").exists()  # not even an empty database file


def test_dry_run_against_an_unmigrated_database_leaves_it_unmigrated(workdir: Path) -> None:
    Database.open("sqlite:///.reconciler/state.db", upgrade=False).dispose()
    result = run("--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Plan: 3 to create, 0 to update")
    db = Database.open("sqlite:///.reconciler/state.db", upgrade=False)
    try:
        assert db.current_revision() is None
    finally:
        db.dispose()


def test_apply_then_update_and_delete(workdir: Path) -> None:
    first = run("apply")
    assert first.exit_code == 0, first.output
    assert first.stdout.endswith("Applied: 3 created, 0 updated, 0 deleted.\n")
    (workdir / "tasks.d" / "alpha.yaml").write_text(
        task_yaml("alpha", crontab="0 2 * * *", options={"queue": "reports"})
    )
    (workdir / "tasks.d" / "gamma.yaml").unlink()
    second = run()
    assert second.exit_code == 0, second.output
    assert second.stdout == (
        "Plan: 0 to create, 1 to update, 1 to delete, 1 unchanged.\n"
        "\n"
        "~ alpha (tasks.d/alpha.yaml:1)\n"
        '    crontab: "0 1 * * *" -> "0 2 * * *"\n'
        '    options.queue: null -> "reports"\n'
        "- gamma\n"
        "Applied: 0 created, 1 updated, 1 deleted.\n"
    )
    third = run()
    assert third.stdout == (
        "Plan: 0 to create, 0 to update, 0 to delete, 2 unchanged.\nNo changes. Nothing applied.\n"
    )


def test_detailed_exitcode(workdir: Path) -> None:
    assert run("--dry-run", "--detailed-exitcode").exit_code == 2
    assert run("--detailed-exitcode").exit_code == 2
    assert run("--detailed-exitcode").exit_code == 0
    assert run("--dry-run", "--detailed-exitcode").exit_code == 0
    (workdir / "tasks.d" / "bad.yaml").write_text("name: bad\n")
    assert run("--dry-run", "--detailed-exitcode").exit_code == 1


def test_json_format(workdir: Path) -> None:
    run()
    (workdir / "tasks.d" / "beta.yaml").write_text(task_yaml("beta", enabled=False))
    write_tasks(workdir / "tasks.d", ["delta"])
    (workdir / "tasks.d" / "gamma.yaml").unlink()
    result = run("--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # delta runs what gamma ran: the plan suggests a rename.
    assert list(data) == ["create", "update", "delete", "unchanged", "hints"]
    assert [(h["old"], h["new"]) for h in data["hints"]] == [("gamma", "delta")]
    assert [(c["name"], c["path"], c["line"]) for c in data["create"]] == [
        ("delta", "tasks.d/delta.yaml", 1)
    ]
    assert data["create"][0]["spec"]["crontab"]["hour"] == "1"
    assert data["update"] == [{"name": "beta", "changes": {"enabled": {"old": True, "new": False}}}]
    assert data["delete"] == [{"name": "gamma"}]
    assert data["unchanged"] == 1


def test_markdown_format(workdir: Path) -> None:
    run()
    (workdir / "tasks.d" / "beta.yaml").write_text(task_yaml("beta", owner="ops"))
    result = run("--dry-run", "--format", "markdown")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "**Plan: 0 to create, 1 to update, 0 to delete, 2 unchanged.**" in text
    assert "| ~ | `beta` | `tasks.d/beta.yaml:1` | `owner` |" in text
    assert '-     owner: "billing"\n+     owner: "ops"' in text
    assert run("--format", "markdown").exit_code == 0
    nothing = run("--dry-run", "--format", "markdown").stdout
    assert "No changes: the database already matches the task files." in nothing


def test_invalid_files_list_every_error_and_apply_nothing(workdir: Path) -> None:
    (workdir / "tasks.d" / "one.yaml").write_text(task_yaml("one", crontab="61 * * * *"))
    (workdir / "tasks.d" / "two.yaml").write_text(task_yaml("two", colour="red"))
    result = run()
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("tasks.d/one.yaml:") for line in lines)
    assert any(line.startswith("tasks.d/two.yaml:") for line in lines)
    assert lines[-1] == (
        "error: 2 errors in tasks.d; nothing applied "
        "(fix them; 'reconcile validate' lists them too)"
    )
    assert "Traceback" not in result.output
    assert json.loads(run("--dry-run", "--format", "json").stdout or "null") is None


def test_mass_delete_refused_then_allowed(workdir: Path) -> None:
    run()
    for name in ("alpha", "beta"):
        (workdir / "tasks.d" / f"{name}.yaml").unlink()
    dry = run("--dry-run")
    assert dry.exit_code == 0
    assert "apply will refuse it without --allow-mass-delete" in dry.stderr
    refused = run()
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: the plan deletes 2 of 3 tasks (more than half of them) from tasks.d; "
        "refusing. If that is intended, pass --allow-mass-delete\n"
    )
    allowed = run("--allow-mass-delete")
    assert allowed.exit_code == 0
    assert allowed.stdout.endswith("Applied: 0 created, 0 updated, 2 deleted.\n")
    missing = run("--tasks-dir", "nowhere")
    assert missing.exit_code == 1
    assert "the tasks directory nowhere does not exist" in missing.stderr


def test_lock_timeout_is_a_clear_error(workdir: Path) -> None:
    run()
    write_tasks(workdir / "tasks.d", ["delta"])
    db = Database.open("sqlite:///.reconciler/state.db")
    try:
        with db.session() as holder:
            store.lock(holder, 5)
            result = run("--lock-timeout", "0.2")
    finally:
        db.dispose()
    assert result.exit_code == 1
    assert result.stderr == (
        "error: another reconciler held the apply lock for more than 0.2 s; "
        "try again, or raise --lock-timeout\n"
    )


def test_database_unavailable_is_a_clear_error(workdir: Path) -> None:
    result = run("--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: cannot reach the database postgresql+psycopg://nobody@127.0.0.1:1/none: "
    )


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = make_plan([Sourced(spec("a"))], [])
    assert "\x1b[" in render_text(plan, colour=True)
    assert "\x1b[" not in render_text(plan, colour=False)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_colour(Terminal()) is True
    assert use_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(Terminal()) is False


def test_progress_bar_only_for_long_work_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress_bar(10) as step:
        step(10)
    assert terminal.getvalue() == ""
    with progress_bar(5000) as step:
        step(5000)
    assert "Applying" in terminal.getvalue()


def test_invalid_database_url_is_a_clear_error(workdir: Path) -> None:
    for command in (["apply"], ["watch"], ["status"]):
        result = run(*command, "--database-url", "nosuch://x")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: invalid database URL 'nosuch://x': ")
