"""``reconcile validate``: exit codes, the three output formats and the --app check."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.cli.validate import github_annotation
from reconciler.core.diagnostics import Diagnostic

VALID = "name: a\nowner: o\ntype: async\ntask: app.worker.test_celery\n"
PAST = (
    "name: p\nowner: o\ntype: scheduled\ntask: app.worker.test_celery\nat: 2001-01-01T00:00:00Z\n"
)
INVALID = 'name: b\nowner: o\ntype: periodic\ntask: t\ncrontab: "61 * * * *"\n'


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_TASKS_DIR", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    root = Path("tasks.d")
    root.mkdir()
    return root


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


def test_valid_directory_exits_0(tasks: Path) -> None:
    (tasks / "a.yaml").write_text(VALID)
    result = run()
    assert result.exit_code == 0, result.output
    assert result.output == "1 file, 1 task: 0 errors, 0 warnings\n"


def test_warnings_still_exit_0(tasks: Path) -> None:
    (tasks / "p.yaml").write_text(PAST)
    result = run()
    assert result.exit_code == 0
    assert result.output == (
        "warning: tasks.d/p.yaml:5:5: at: 2001-01-01T00:00:00+00:00 is in the past "
        "(hint: set a future time, or remove the task once it has run)\n"
        "1 file, 1 task: 0 errors, 1 warning\n"
    )


def test_invalid_exits_1_with_every_error(tasks: Path) -> None:
    (tasks / "a.yaml").write_text(VALID)
    (tasks / "b.yaml").write_text(INVALID + "---\n" + INVALID.replace("name: b", "name: c"))
    result = run()
    assert result.exit_code == 1
    assert result.output == (
        "tasks.d/b.yaml:5:10: crontab: '61 * * * *' minute must be 0-59, got 61\n"
        "tasks.d/b.yaml:11:10: crontab: '61 * * * *' minute must be 0-59, got 61\n"
        "2 files, 1 task: 2 errors, 0 warnings\n"
    )


def test_paths_and_tasks_dir(tasks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Path("other")
    other.mkdir()
    (other / "x.yml").write_text(INVALID)
    (tasks / "a.yaml").write_text(VALID)
    assert run("other").exit_code == 1
    assert run("other/x.yml").exit_code == 1
    assert run("tasks.d", "--tasks-dir", "other").exit_code == 0
    assert run("--tasks-dir", "other").exit_code == 1
    monkeypatch.setenv("RECONCILER_TASKS_DIR", "other")
    assert run().exit_code == 1


def test_missing_default_directory_exits_1(tasks: Path) -> None:
    result = run("--tasks-dir", "nowhere")
    assert result.exit_code == 1
    assert result.output == (
        "nowhere:1:1: file: tasks directory does not exist (hint: create it or pass --tasks-dir)\n"
        "0 files, 0 tasks: 1 error, 0 warnings\n"
    )


@pytest.mark.parametrize(
    "args", [["--bogus"], ["nowhere.yaml"], ["--format", "xml"]], ids=["option", "path", "format"]
)
def test_usage_errors_exit_2(tasks: Path, args: list[str]) -> None:
    assert run(*args).exit_code == 2


def test_json_format(tasks: Path) -> None:
    (tasks / "b.yaml").write_text(INVALID)
    (tasks / "p.yaml").write_text(PAST)
    result = run("--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "valid": False,
        "files": 2,
        "tasks": 1,
        "errors": [
            {
                "path": "tasks.d/b.yaml",
                "line": 5,
                "column": 10,
                "field": "crontab",
                "message": "'61 * * * *' minute must be 0-59, got 61",
                "hint": None,
            }
        ],
        "warnings": [
            {
                "path": "tasks.d/p.yaml",
                "line": 5,
                "column": 5,
                "field": "at",
                "message": "2001-01-01T00:00:00+00:00 is in the past",
                "hint": "set a future time, or remove the task once it has run",
            }
        ],
    }


def test_github_format_and_step_summary(
    tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tasks / "b.yaml").write_text(INVALID)
    (tasks / "p.yaml").write_text(PAST)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("--format", "github")
    assert result.exit_code == 1
    assert result.output == (
        "::error file=tasks.d/b.yaml,line=5,col=10::crontab: '61 * * * *' minute must be 0-59, "
        "got 61\n"
        "::warning file=tasks.d/p.yaml,line=5,col=5::at: 2001-01-01T00:00:00+00:00 is in the "
        "past (hint: set a future time, or remove the task once it has run)\n"
        "2 files, 1 task: 1 error, 1 warning\n"
    )
    assert summary.read_text() == (
        "earlier step\n"
        "### reconcile validate: invalid\n"
        "\n"
        "2 files, 1 task: 1 error, 1 warning\n"
        "\n"
        "| | file | line | field | message |\n"
        "|---|---|---|---|---|\n"
        "| error | `tasks.d/b.yaml` | 5:10 | `crontab` | '61 * * * *' minute must be 0-59, "
        "got 61 |\n"
        "| warning | `tasks.d/p.yaml` | 5:5 | `at` | 2001-01-01T00:00:00+00:00 is in the past "
        "(hint: set a future time, or remove the task once it has run) |\n"
        "\n"
    )


def test_github_annotation_escapes() -> None:
    diagnostic = Diagnostic("a,b:c.yaml", 1, 2, "kwargs", "100% bad\nvalue")
    assert github_annotation(diagnostic) == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=2::kwargs: 100%25 bad%0Avalue"
    )


@pytest.fixture
def celery_app_module(tmp_path: Path) -> str:
    """A tiny Celery app module importable from the working directory."""
    name = f"validate_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from celery import Celery\n"
        f"app = Celery({name!r}, broker='memory://')\n"
        "@app.task(name='tests.validate.send_report')\n"
        "def send_report():\n"
        "    return None\n"
    )
    return f"{name}:app"


def test_app_reports_unregistered_task_names(tasks: Path, celery_app_module: str) -> None:
    known = VALID.replace("app.worker.test_celery", "tests.validate.send_report")
    (tasks / "a.yaml").write_text(known)
    (tasks / "c.yaml").write_text(known.replace("name: a", "name: c").replace("report", "reprt"))
    result = run("--app", celery_app_module)
    assert result.exit_code == 1, result.output
    assert result.output == (
        "tasks.d/c.yaml:4:7: task: 'tests.validate.send_reprt' is not registered by the Celery "
        "app (hint: did you mean 'tests.validate.send_report'?)\n"
        "2 files, 2 tasks: 1 error, 0 warnings\n"
    )
    (tasks / "c.yaml").unlink()
    assert run("--app", celery_app_module).exit_code == 0


def test_bad_app_is_an_error(tasks: Path) -> None:
    result = run("--app", "no_such_module_here:app")
    assert result.exit_code == 1
    assert "cannot import 'no_such_module_here'" in result.output


def test_app_failing_on_import_is_an_error(tasks: Path, tmp_path: Path) -> None:
    name = f"broken_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no config')\n")
    result = run("--app", f"{name}:app")
    assert result.exit_code == 1
    assert result.output == (
        f"error: --app {name}:app: loading the app failed: RuntimeError: no config\n"
    )


def test_unwritable_step_summary_is_an_error(tasks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tasks / "a.yaml").write_text(VALID)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", "no/such/dir/summary.md")
    result = run("--format", "github")
    assert result.exit_code == 1
    assert result.output.endswith(
        "error: GITHUB_STEP_SUMMARY=no/such/dir/summary.md: cannot append: "
        "No such file or directory\n"
    )


def test_validate_imports_neither_sqlalchemy_nor_celery(tasks: Path) -> None:
    (tasks / "a.yaml").write_text(VALID)
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main(['validate'])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print(code, sorted(m for m in ('sqlalchemy', 'celery', 'kombu') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 []"
