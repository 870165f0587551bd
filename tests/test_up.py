"""``reconcile up``: the plan of children, the supervisor's stop rules, and a real run.

The end-to-end run starts ``reconcile up`` on the embedded defaults (SQLite state and
broker) in a temporary directory with one interval task, as a new user would.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reconciler.settings import Settings
from reconciler.up import ChildSpec, Supervisor, UpOptions, child_env, plan_children
from tests.support import reconcile_argv, wait_for

TICK = """\
name: tick
owner: ops
type: periodic
task: app.worker.test_celery
args: ["tick"]
interval: {seconds: 1}
"""


def settings() -> Settings:
    return Settings.resolve("tasks.d", "sqlite:///s.db", "redis://localhost/3", "my.app:celery")


def test_the_children_share_the_settings_through_their_environment() -> None:
    env = child_env(settings(), base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "RECONCILER_TASKS_DIR": "tasks.d",
        "RECONCILER_DATABASE_URL": "sqlite:///s.db",
        "RECONCILER_BROKER_URL": "redis://localhost/3",
        "RECONCILER_APP": "my.app:celery",
        "PYTHONUNBUFFERED": "1",
    }
    children = {c.name: c.argv for c in plan_children(settings(), UpOptions(port=9000))}
    assert list(children) == ["watch", "beat", "worker", "serve"]
    assert children["beat"][1:] == [
        "-m", "celery", "-A", "my.app:celery", "beat",
        "--scheduler", "reconciler.beat:DatabaseScheduler", "--loglevel", "INFO",
    ]  # fmt: skip
    assert children["serve"][-4:] == ["--host", "127.0.0.1", "--port", "9000"]
    assert "serve" not in {c.name for c in plan_children(settings(), UpOptions(serve=False))}


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_that_dies_stops_the_others_and_up_exits_1() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ChildSpec("sleeper", python("import time; print('up', flush=True); time.sleep(60)")),
            ChildSpec("crasher", python("import sys, time; time.sleep(0.3); sys.exit(3)")),
        ],
        dict(os.environ),
        out,
        colour=False,
    )
    assert supervisor.run(install_signals=lambda _: None) == 1
    assert all(r.process.poll() is not None for r in supervisor.running)
    text = out.getvalue()
    assert "sleeper | up\n" in text
    assert "up      | crasher exited unexpectedly (exit code 3); stopping the others" in text


def test_a_requested_stop_ends_every_child_and_up_exits_0() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [ChildSpec("a", python("import time; time.sleep(60)"))], dict(os.environ), out
    )
    supervisor.start()
    supervisor.request_stop("SIGTERM")
    assert supervisor.wait() is None
    supervisor.stop()
    assert supervisor.running[0].process.returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('x', flush=True); time.sleep(60)"  # noqa: E501
    out = io.StringIO()
    supervisor = Supervisor([ChildSpec("stubborn", python(code))], dict(os.environ), out,
                            stop_timeout=0.5)  # fmt: skip
    supervisor.start()
    wait_for(lambda: "stubborn | x" in out.getvalue(), 10)
    supervisor.stop()
    assert supervisor.running[0].process.returncode == -signal.SIGKILL
    assert "stubborn did not stop in 0 s; killing it" in out.getvalue()


def successes(tmp_path: Path) -> int:
    database = tmp_path / ".reconciler" / "state.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database, timeout=5) as connection:
        try:
            (count,) = connection.execute(
                "SELECT count(*) FROM task_executions WHERE task_name = 'tick' "
                "AND status = 'success'"
            ).fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0
    return int(count)


@pytest.mark.e2e
def test_up_runs_everything_on_the_embedded_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "tasks.d").mkdir()
    (tmp_path / "tasks.d" / "tick.yaml").write_text(TICK)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECONCILER_")}
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [*reconcile_argv("up", "--port", "0")],
        cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: successes(tmp_path) >= 3, 20, interval=0.2,
                 message="three runs of the interval task")  # fmt: skip
        port = wait_for(lambda: re.search(r"running on http://127.0.0.1:(\d+)", log.read_text()),
                        10, message="the HTTP endpoint").group(1)  # fmt: skip
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        url = f"http://127.0.0.1:{port}/api/v1/tasks/tick/executions"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response)["items"][0]["task"] == "tick"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "watch  | " in output and "beat   | " in output and "worker | " in output
    assert output.rstrip().endswith("up     | stopped")
    assert "Traceback" not in output
