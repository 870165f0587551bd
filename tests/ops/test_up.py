"""``reconcile up``: the plan of children, the supervisor's stop rules, and a real run.

The end-to-end run starts ``reconcile up`` on the embedded defaults (SQLite state and
broker) in a temporary directory with one interval task, as a new user would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from benchmarks.services import free_port
from reconciler.ops.up import ChildSpec, Supervisor, UpOptions, child_env, plan_children
from reconciler.settings import Settings
from tests.mounts import fill, remount, tmpfs
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
    tick_tasks(tmp_path)
    log = tmp_path / "up.log"
    process = start_up(tmp_path, 0, log)
    try:
        wait_for(lambda: successes(tmp_path) >= 3, 20, interval=0.2,
                 message="three runs of the interval task")  # fmt: skip
        running = wait_for(lambda: re.search(r"running on http://127.0.0.1:(\d+)", log.read_text()),
                           10, message="the HTTP endpoint")  # fmt: skip
        assert running is not None
        port = running.group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        url = f"http://127.0.0.1:{port}/api/v1/tasks/tick/executions"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response)["items"][0]["task"] == "tick"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        reap(process)
    output = log.read_text()
    assert "watch  | " in output and "beat   | " in output and "worker | " in output
    assert output.rstrip().endswith("up     | stopped")
    assert "Traceback" not in output


# --- process lifetime and local faults (docs/deploy.md, "Process lifetime") ---------------


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECONCILER_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def tick_tasks(directory: Path) -> None:
    """``directory/tasks.d`` holding the interval task ``tick``."""
    (directory / "tasks.d").mkdir()
    (directory / "tasks.d" / "tick.yaml").write_text(TICK)


def reap(process: subprocess.Popen[bytes], tree: Iterable[psutil.Process] = ()) -> None:
    """Kill ``process`` if it still runs, then whatever is left of ``tree``."""
    if process.poll() is None:
        process.kill()
        process.wait()
    kill_all(tree)


def start_up(
    directory: Path, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        reconcile_argv("up", "--port", str(port)), cwd=directory,
        env={**clean_env(), **(env or {})}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_up(directory: Path, port: int) -> subprocess.CompletedProcess[str]:
    """``reconcile up`` expected to refuse at once."""
    argv = reconcile_argv("up", "--port", str(port))
    return subprocess.run(
        argv, cwd=directory, env=clean_env(), capture_output=True, text=True, timeout=30
    )


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alive(processes: Iterable[psutil.Process]) -> list[str]:
    """The command lines of the processes still running (a zombie has ended)."""
    left = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(process.cmdline()[2:6]))
    return left


def kill_all(processes: Iterable[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


@pytest.mark.e2e
def test_kill_9_of_up_leaves_no_child_alive_and_the_next_up_starts(tmp_path: Path) -> None:
    tick_tasks(tmp_path)
    port = free_port()
    first = start_up(tmp_path, port, tmp_path / "first.log")
    tree: list[psutil.Process] = []
    try:
        wait_for(lambda: successes(tmp_path) >= 2 and healthy(port), 40, interval=0.2,
                 message="the first up to run tasks and serve")  # fmt: skip
        tree = psutil.Process(first.pid).children(recursive=True)
        commands = " | ".join(" ".join(p.cmdline()) for p in tree)
        # The watchdog, watch, beat, serve, and the worker with its two pool processes.
        assert len(tree) >= 7, commands
        assert sum("worker" in " ".join(p.cmdline()) for p in tree) >= 3, commands

        # A second up on the same port refuses at once and starts nothing.
        other = tmp_path / "other"
        other.mkdir()
        refused = run_up(other, port)
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr == (
            f"error: port {port} on 127.0.0.1 is already in use (another 'reconcile up' or "
            f"'serve'?): stop it, or pass --port with a free port (0: any)\n"
        )
        assert not (other / ".reconciler").exists()

        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed = time.monotonic()
        wait_for(lambda: not alive(tree), 15, interval=0.1,
                 message=f"every child of the killed up to end: {alive(tree)}")  # fmt: skip
        ended = time.monotonic() - killed
        assert ended < 15

        second = start_up(tmp_path, port, tmp_path / "second.log")
        try:
            before = successes(tmp_path)
            wait_for(lambda: healthy(port) and successes(tmp_path) > before, 40, interval=0.2,
                     message="the next up to serve on the same port and run tasks")  # fmt: skip
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            if second.poll() is None:
                kill_all(psutil.Process(second.pid).children(recursive=True))
                second.kill()
                second.wait()
    finally:
        reap(first, tree)
    output = (tmp_path / "first.log").read_text()
    assert "lifeline | process" in output and "its children are stopped" in output
    assert "Traceback" not in (tmp_path / "second.log").read_text()


def test_watchdog_kills_a_child_that_ignores_the_parent_death_signal(tmp_path: Path) -> None:
    # A parent running a Supervisor with a 1 s stop timeout; its child ignores SIGTERM and
    # has a child of its own. Killing the parent must end both, within the timeout.
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('ready', flush=True); time.sleep(60)"
    )
    parent_code = (
        "import os, sys\n"
        "from reconciler.ops.up import ChildSpec, Supervisor\n"
        f"spec = ChildSpec('stubborn', [sys.executable, '-c', {stubborn!r}])\n"
        "s = Supervisor([spec], dict(os.environ), sys.stdout, colour=False, stop_timeout=1)\n"
        "s.run(install_signals=lambda _: None)\n"
    )
    log = tmp_path / "parent.log"
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, env=clean_env())  # fmt: skip
    tree: list[psutil.Process] = []
    try:
        wait_for(lambda: "stubborn | ready" in log.read_text(), 20, message="the child")
        wait_for(lambda: len(psutil.Process(parent.pid).children(recursive=True)) >= 3, 10)
        tree = psutil.Process(parent.pid).children(recursive=True)
        parent.kill()
        parent.wait(10)
        wait_for(lambda: not alive(tree), 10, interval=0.1,
                 message=f"the stubborn child and its child to end: {alive(tree)}")  # fmt: skip
    finally:
        reap(parent, tree)
    assert "its children are stopped (1 killed after 1 s)" in log.read_text()


def test_a_child_whose_parent_is_already_gone_does_not_start(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    argv = [sys.executable, "-m", "reconciler.ops.lifeline", "exec", str(os.getpid()), "--",
            sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]  # fmt: skip
    # Started by this process: runs. Started by another one: its parent is not the one
    # named, as when the named parent died before the child could arm its signal.
    assert subprocess.run(argv, timeout=30, check=False).returncode == 0
    assert marker.exists()
    marker.unlink()
    relay = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    elsewhere = subprocess.run([sys.executable, "-c", relay, *argv], capture_output=True,
                               text=True, timeout=30)  # fmt: skip
    assert elsewhere.returncode == 1
    assert f"lifeline: parent {os.getpid()} is gone" in elsewhere.stderr
    assert not marker.exists()


def test_up_on_a_read_only_state_directory_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "tasks.d").mkdir()
    state = tmp_path / ".reconciler"
    with tmpfs(state, 1024):
        remount(state, "ro")
        done = run_up(tmp_path, 0)
        assert list(state.iterdir()) == []
    assert done.returncode == 1
    assert done.stdout == ""  # nothing started
    assert done.stderr == (
        "error: the embedded state .reconciler cannot be written (Read-only file system): "
        "free space or make it writable, or point --database-url and --broker-url elsewhere\n"
    )


def test_up_on_a_full_state_directory_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "tasks.d").mkdir()
    state = tmp_path / ".reconciler"
    with tmpfs(state, 1024):
        fill(state)
        done = run_up(tmp_path, 0)
        assert [path.name for path in state.iterdir()] == ["filler"]
    assert done.returncode == 1
    assert done.stdout == ""  # nothing started
    assert done.stderr == (
        "error: the embedded state .reconciler cannot be written (No space left on device): "
        "free space or make it writable, or point --database-url and --broker-url elsewhere\n"
    )


@pytest.mark.e2e
def test_up_keeps_running_through_a_full_disk_under_its_state(tmp_path: Path) -> None:
    tick_tasks(tmp_path)
    log = tmp_path / "up.log"
    with tmpfs(tmp_path / ".reconciler", 8192) as state:
        up = start_up(tmp_path, 0, log)
        tree: list[psutil.Process] = []
        try:
            wait_for(lambda: successes(tmp_path) >= 2, 40, interval=0.2,
                     message="the first runs")  # fmt: skip
            tree = psutil.Process(up.pid).children(recursive=True)
            filler = fill(state)
            wait_for(lambda: "disk is full" in log.read_text(), 30, interval=0.2,
                     message="a part to report the full disk")  # fmt: skip
            # Three beat ticks on the full disk: every part is still there.
            until = time.monotonic() + 3
            while time.monotonic() < until:
                assert up.poll() is None, log.read_text()[-2000:]
                time.sleep(0.2)
            assert len(alive(tree)) == len(tree), log.read_text()[-2000:]
            filler.unlink()
            after = successes(tmp_path)
            wait_for(lambda: successes(tmp_path) >= after + 2, 40, interval=0.2,
                     message="runs to resume once space is free")  # fmt: skip
            up.send_signal(signal.SIGTERM)
            assert up.wait(40) == 0
        finally:
            reap(up, tree)
    output = log.read_text()
    assert "exited unexpectedly" not in output and "Traceback" not in output
