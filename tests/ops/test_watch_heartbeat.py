"""The watch loop's heartbeat and its ``--git-pull`` state, as ``doctor`` and ``/metrics``
read them: in process with an injected clock, and as a real ``reconcile watch`` process,
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from reconciler.cli import main
from reconciler.ops.doctor import GIT_PULL_FAILS, Check, run_checks
from reconciler.ops.watch import Watcher, WatchOptions
from reconciler.settings import Settings
from reconciler.store.database import Database
from reconciler.store.heartbeats import WATCH_ALIVE_WITHIN
from reconciler.store.tables import WatchHeartbeat
from reconciler.web import metrics
from tests.beatsupport import Clock
from tests.support import Process, reconcile_argv, wait_for
from tests.test_apply import git, pushed_clone

UNREACHABLE = "http://127.0.0.1:9/tasks.git"
"""A remote nothing listens on: every pull fails at once."""


def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A clone of a repository holding ``tasks.d/a.yaml``, and its HEAD."""
    _, clone = pushed_clone(tmp_path)
    return clone, git(clone, "rev-parse", "HEAD").strip()


def row(db: Database) -> WatchHeartbeat | None:
    with db.session() as session:
        found = session.scalars(select(WatchHeartbeat)).one_or_none()
        if found is not None:
            session.expunge(found)
        return found


def watch_check(settings: Settings, now: dt.datetime) -> Check:
    checks = run_checks(settings, now=now, timeout=0.5)
    return next(check for check in checks if check.name == "watch")


def settings_for(tmp_path: Path, tasks: Path, database_url: str) -> Settings:
    return Settings.resolve(
        tasks, database_url, f"sqla+sqlite:///{tmp_path}/broker.db", "reconciler.demo:app"
    )


def test_the_heartbeat_carries_the_pulled_commit_and_a_pull_that_keeps_failing(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    clone, head = checkout(tmp_path)
    clock = Clock(dt.datetime.now(dt.UTC))
    options = WatchOptions(clone / "tasks.d", database_url, git_pull=30, name="watch-a")
    watcher = Watcher(options, wall=clock)
    settings = settings_for(tmp_path, clone / "tasks.d", database_url)
    assert watch_check(settings, clock.now).message.startswith("no watch loop runs")

    watcher.pull()
    watcher.heartbeat()
    found = row(db)
    assert found is not None
    assert (found.name, found.git_commit, found.pull_failures, found.git_pull_every) == (
        "watch-a", head, 0, 30.0,
    )  # fmt: skip
    check = watch_check(settings, clock.now)
    assert (check.status, check.message) == ("ok", "1 watch loop running")
    assert check.details[0].endswith(f"git pull every 30 s working, at {head[:12]}")

    git(clone, "remote", "set-url", "origin", UNREACHABLE)
    failing_since = clock.now
    for n in range(1, GIT_PULL_FAILS + 1):
        watcher.pull()
        watcher.heartbeat()
        check = watch_check(settings, clock.now)
        assert check.status == ("fail" if n == GIT_PULL_FAILS else "warn"), check
        clock.now += dt.timedelta(seconds=30)
    found = row(db)
    assert found is not None
    assert (found.pull_failures, found.pull_failing_since, found.git_commit) == (
        GIT_PULL_FAILS, failing_since, head,
    )  # fmt: skip
    assert found.pull_error and "127.0.0.1" in found.pull_error
    assert check.message == (
        f"git pull of watch loop watch-a failed {GIT_PULL_FAILS} time(s) in a row "
        f"(since 60 s ago): {found.pull_error}"
    )
    assert check.fix and str(clone / "tasks.d") in check.fix

    scraped = metrics.render(db, None).decode()
    assert f'reconciler_watch_git_pull_failures{{watch="watch-a"}} {GIT_PULL_FAILS}.0' in scraped
    assert re.search(r'^reconciler_watch_heartbeat_age_seconds\{watch="watch-a"\} ', scraped, re.M)

    # The loop died: nothing writes the heartbeat any more.
    later = clock.now + WATCH_ALIVE_WITHIN + dt.timedelta(seconds=30)
    check = watch_check(settings, later)
    assert check.status == "fail"
    assert check.message == "watch loop not running: watch-a (last seen 4 min ago)"

    # Pulls work again: the failures are cleared with the next heartbeat.
    git(clone, "remote", "set-url", "origin", str(tmp_path / "upstream.git"))
    watcher.pull()
    watcher.heartbeat()
    found = row(db)
    assert found is not None and (found.pull_failures, found.pull_error) == (0, None)


@pytest.mark.e2e
def test_a_watch_process_reports_failing_pulls_and_removes_its_heartbeat_on_sigterm(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    clone, head = checkout(tmp_path)
    git(clone, "remote", "set-url", "origin", UNREACHABLE)
    tasks = clone / "tasks.d"
    argv = reconcile_argv(
        "watch", "--tasks-dir", str(tasks), "--database-url", database_url, "--git-pull", "1"
    )
    env = {"RECONCILER_WATCH_NAME": "ops-watch"}

    def failures() -> Any:
        found = row(db)
        return found is not None and found.pull_failures >= GIT_PULL_FAILS and found

    with Process(argv, tmp_path / "watch.log", env=env, cwd=tmp_path) as proc:
        found = wait_for(failures, 30, message="three failed pulls in the heartbeat")
        assert (found.name, found.pid, found.git_commit) == ("ops-watch", proc.pid, head)
        doctor = CliRunner().invoke(
            main,
            ["doctor", "--database-url", database_url, "--broker-url",
             f"sqla+sqlite:///{tmp_path}/broker.db", "--tasks-dir", str(tasks)],
        )  # fmt: skip
        assert doctor.exit_code == 1
        assert "✗ watch       git pull of watch loop ops-watch failed " in doctor.stdout
        proc.kill(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
    assert row(db) is None, proc.output()
    assert "Traceback" not in proc.output()
