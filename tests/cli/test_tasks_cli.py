"""``reconcile tasks``: the registered task names, as text and JSON, and a bad ``--app``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from tests.demo.test_demo import DEMO_TASKS
from tests.support import reconcile_argv


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("RECONCILER_APP", raising=False)
    return CliRunner()


def test_text_lists_the_demo_tasks(runner: CliRunner) -> None:
    # A fresh process: in this one, shared tasks of other tests' apps may join every app.
    env = {key: value for key, value in os.environ.items() if key != "RECONCILER_APP"}
    done = subprocess.run(
        reconcile_argv("tasks"), capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(f"{name}\n" for name in DEMO_TASKS)


def test_json(runner: CliRunner) -> None:
    result = runner.invoke(main, ["tasks", "--app", "reconciler.demo:app", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["app"] == "reconciler.demo:app"
    assert [name for name in report["tasks"] if name.startswith("app.")] == DEMO_TASKS


def test_app_from_the_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myproj_celery.py").write_text(
        "from celery import Celery\n"
        "app = Celery('mine')\n"
        "@app.task(name='mine.hello')\n"
        "def hello():\n"
        "    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RECONCILER_APP", "myproj_celery:app")
    result = runner.invoke(main, ["tasks"])
    assert result.exit_code == 0, result.output
    assert "mine.hello" in result.stdout.splitlines()
    assert "app.worker.test_celery" not in result.stdout  # the demo's tasks are not shared


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (
            "nosuch.module",
            "error: --app nosuch.module: cannot import 'nosuch.module': No module named 'nosuch'\n",
        ),
        (
            "reconciler.demo:nothing",
            "error: --app reconciler.demo:nothing: 'reconciler.demo' has no attribute 'nothing'\n",
        ),
        (
            "reconciler.demo:logger",
            "error: --app reconciler.demo:logger: 'logger' is a Logger, not a Celery app\n",
        ),
    ],
)
def test_bad_app(runner: CliRunner, app: str, message: str) -> None:
    result = runner.invoke(main, ["tasks", "--app", app])
    assert result.exit_code == 1
    assert result.stderr == message
    assert result.stdout == ""


def test_app_whose_import_raises(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_celery_app.py").write_text("raise RuntimeError('no config file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(main, ["tasks", "--app", "broken_celery_app:app"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: --app broken_celery_app:app: importing it failed: RuntimeError: no config file\n"
    )
