"""``reconcile watch`` as a real process: file changes, invalid states, outages, git pull."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from reconciler.ops.watch import Watcher, WatchOptions
from reconciler.store.database import Database
from reconciler.store.tables import ApplyRecord, Task
from tests.conftest import opened
from tests.factories import task_yaml, write_tasks
from tests.support import Process, TcpProxy, reconcile_argv, wait_for
from tests.test_apply import git, pushed_clone


def watch(tmp_path: Path, tasks: Path, url: str, *extra: str) -> Process:
    argv = reconcile_argv(
        "watch", "--tasks-dir", str(tasks), "--database-url", url, "--debounce-ms", "50", *extra
    )
    return Process(argv, tmp_path / "watch.log", cwd=tmp_path)


def names(db: Database) -> dict[str, str]:
    """Live task name -> its crontab hour (enough to see which version is applied)."""
    with db.session() as session:
        rows = session.execute(
            select(Task.name, Task.spec).where(Task.deleted_at.is_(None)).order_by(Task.name)
        )
        return {name: str(spec.get("crontab", {}).get("hour")) for name, spec in rows}


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    yield from opened(sqlite_url)


@contextlib.contextmanager
def watching(tmp_path: Path, db: Database, url: str, *extra: str) -> Iterator[tuple[Path, Process]]:
    """``reconcile watch`` on a tasks directory of task ``a``: the directory and the
    process, once ``a`` is applied."""
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    with watch(tmp_path, tasks, url, *extra) as proc:
        wait_for(lambda: names(db) == {"a": "1"}, 30, message="first apply")
        yield tasks, proc


@pytest.mark.e2e
def test_applies_at_start_and_on_change_and_stops_on_sigterm(
    tmp_path: Path, sqlite_url: str, sqlite_db: Database
) -> None:
    with watching(tmp_path, sqlite_db, sqlite_url) as (tasks, proc):
        write_tasks(tasks, ["b"])
        wait_for(lambda: names(sqlite_db) == {"a": "1", "b": "1"}, 30, message="b applied")
        wait_for(lambda: "applied: 1 created (b); 1 unchanged, in " in proc.output(), 10)
        started = time.monotonic()
        proc.kill(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        assert time.monotonic() - started < 5
    log = proc.output()
    assert "applied: 1 created (a); 0 unchanged, in " in log
    assert "SIGTERM received, stopping" in log and "Traceback" not in log


@pytest.mark.e2e
def test_invalid_state_keeps_the_last_good_one_and_the_next_valid_is_applied(
    tmp_path: Path, sqlite_url: str, sqlite_db: Database
) -> None:
    with watching(tmp_path, sqlite_db, sqlite_url) as (tasks, proc):
        # One "commit": a valid edit of a, plus a broken new file.
        (tasks / "a.yaml").write_text(task_yaml("a", crontab="0 5 * * *"))
        (tasks / "b.yaml").write_text(task_yaml("b", crontab="61 * * * *"))
        wait_for(lambda: "invalid task files, last good state kept" in proc.output(), 30)
        assert "b.yaml:" in proc.output()
        assert names(sqlite_db) == {"a": "1"}
        (tasks / "b.yaml").write_text(task_yaml("b", crontab="0 3 * * *"))
        wait_for(lambda: names(sqlite_db) == {"a": "5", "b": "3"}, 30, message="fixed state")
        wait_for(lambda: "task files are valid again" in proc.output(), 10)
        assert proc.popen.poll() is None


@pytest.mark.e2e
def test_resync_reverts_drift(tmp_path: Path, sqlite_url: str, sqlite_db: Database) -> None:
    with watching(tmp_path, sqlite_db, sqlite_url, "--resync-interval", "0.5"):
        with sqlite_db.session() as session:
            session.execute(update(Task).where(Task.name == "a").values(enabled=False))

        def enabled() -> bool:
            with sqlite_db.session() as session:
                return bool(session.scalar(select(Task.enabled).where(Task.name == "a")))

        wait_for(enabled, 30, message="drift reverted")


@pytest.mark.e2e
@pytest.mark.postgres
def test_survives_the_database_going_away_and_applies_the_pending_change(
    tmp_path: Path, postgres_url: str, postgres_db: Database
) -> None:
    direct = postgres_db
    target = make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = target.set(port=proxy.port).render_as_string(hide_password=False)
        with watching(tmp_path, direct, proxied, "--max-backoff", "1") as (tasks, proc):
            proxy.cut()
            write_tasks(tasks, ["b"])
            wait_for(lambda: "database unavailable, retrying" in proc.output(), 30)
            assert names(direct) == {"a": "1"}
            proxy.restore()
            wait_for(lambda: names(direct) == {"a": "1", "b": "1"}, 30, message="after outage")
            wait_for(lambda: "database is reachable again" in proc.output(), 10)
            assert proc.output().count("database unavailable, retrying") == 1
            assert proc.popen.poll() is None


@pytest.mark.e2e
def test_git_pull_applies_what_was_pushed(
    tmp_path: Path, sqlite_url: str, sqlite_db: Database
) -> None:
    author, checkout = pushed_clone(tmp_path)
    with watch(tmp_path, checkout / "tasks.d", sqlite_url, "--git-pull", "1") as proc:
        wait_for(lambda: names(sqlite_db) == {"a": "1"}, 30)
        write_tasks(author / "tasks.d", ["b"])
        git(author, "add", ".")
        git(author, "commit", "-q", "-m", "second")
        git(author, "push", "-q", "origin", "main")
        wait_for(lambda: names(sqlite_db) == {"a": "1", "b": "1"}, 30, message="pulled and applied")
        assert "git pull: " in proc.output()
    head = git(author, "rev-parse", "HEAD").strip()
    with sqlite_db.session() as session:
        last = session.scalars(select(ApplyRecord).order_by(ApplyRecord.id.desc())).first()
        assert last is not None
        assert (last.created_names, last.git_commit, last.git_dirty) == (["b"], head, False)


# --- the loop's decisions, in process ---------------------------------------------------


def test_cycle_reports_an_invalid_state_once_and_keeps_the_applied_one(
    tmp_path: Path, sqlite_url: str, sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    watcher = Watcher(WatchOptions(tasks_dir=tasks, database_url=sqlite_url))
    caplog.set_level(logging.INFO, logger="reconciler.watch")
    assert watcher.cycle() is True
    (tasks / "b.yaml").write_text("name: b\n")
    assert watcher.cycle() is True
    assert watcher.cycle() is True
    assert names(sqlite_db) == {"a": "1"}
    invalid = [r for r in caplog.records if "invalid task files" in r.getMessage()]
    assert len(invalid) == 1 and "b.yaml" in invalid[0].getMessage()
    (tasks / "b.yaml").unlink()
    assert watcher.cycle() is True
    assert "task files are valid again" in caplog.text
    assert watcher.cycles == 2


def test_cycle_backs_off_while_the_database_is_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    options = WatchOptions(
        tasks_dir=tasks, database_url="postgresql://nobody@127.0.0.1:1/none", max_backoff=2
    )
    watcher = Watcher(options)
    caplog.set_level(logging.INFO, logger="reconciler.watch")
    backoffs = []
    for _ in range(4):
        assert watcher.cycle() is False
        backoffs.append(watcher._backoff)
    assert backoffs == [0.5, 1.0, 2.0, 2.0]
    assert caplog.text.count("database unavailable, retrying with backoff") == 1
    watcher.stop()
    watcher.run()  # returns at once once stopped
