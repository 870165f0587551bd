"""Apply end to end in the library, on SQLite and PostgreSQL: files in, rows out.

Validation first, the mass-delete guard, drift, the apply log with git facts, and the
writes of a one-file change; the process-level fault tests are marked e2e.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select, update

from reconciler.apply import InvalidTasks, MassDeleteRefused, git_info, reconcile
from reconciler.store.database import Database
from reconciler.store.tables import ApplyRecord, Task
from tests.factories import task_yaml, write_tasks
from tests.support import ROOT, Process, reconcile_argv, wait_for


def live_names(db: Database) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(select(Task.name).where(Task.deleted_at.is_(None)).order_by(Task.name))
        )


def records(db: Database) -> list[ApplyRecord]:
    with db.session() as session:
        found = list(session.scalars(select(ApplyRecord).order_by(ApplyRecord.id)))
        session.expunge_all()
        return found


def test_first_apply_then_no_op(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a", "b"])
    result = reconcile(db, tasks)
    assert result.applied and result.record_id is not None
    assert [c.name for c in result.plan.creates] == ["a", "b"]
    assert live_names(db) == ["a", "b"]
    again = reconcile(db, tasks)
    assert not again.plan and not again.applied and again.record_id is None
    assert again.plan.unchanged == 2
    assert len(records(db)) == 1  # no-op applies are not recorded


def test_dry_run_writes_nothing(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    result = reconcile(db, tasks, dry_run=True)
    assert [c.name for c in result.plan.creates] == ["a"] and not result.applied
    assert live_names(db) == [] and records(db) == []


def test_any_invalid_file_applies_nothing_and_lists_every_error(
    db: Database, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["good"])
    (tasks / "bad1.yaml").write_text(task_yaml("bad1", crontab="61 * * * *"))
    (tasks / "bad2.yaml").write_text(task_yaml("bad2", colour="red"))
    with pytest.raises(InvalidTasks) as info:
        reconcile(db, tasks)
    assert {Path(d.path).name for d in info.value.diagnostics} == {"bad1.yaml", "bad2.yaml"}
    assert str(info.value) == (
        f"2 errors in {tasks}; nothing applied (fix them; 'reconcile validate' lists them too)"
    )
    assert live_names(db) == []


def test_mass_delete_guard(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a", "b", "c"])
    reconcile(db, tasks)
    for name in ("a", "b"):
        (tasks / f"{name}.yaml").unlink()
    with pytest.raises(MassDeleteRefused) as info:
        reconcile(db, tasks)
    assert str(info.value) == (
        f"the plan deletes 2 of 3 tasks (more than half of them) from {tasks}; refusing. "
        f"If that is intended, pass --allow-mass-delete"
    )
    assert live_names(db) == ["a", "b", "c"]
    # The dry run still shows it.
    assert len(reconcile(db, tasks, dry_run=True).plan.deletes) == 2
    reconcile(db, tasks, allow_mass_delete=True)
    assert live_names(db) == ["c"]


def test_missing_directory_is_refused_unless_allowed(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    reconcile(db, tasks)
    missing = tmp_path / "typo.d"
    with pytest.raises(MassDeleteRefused, match="does not exist, so every task would be deleted"):
        reconcile(db, missing)
    assert live_names(db) == ["a"]
    reconcile(db, missing, allow_mass_delete=True)
    assert live_names(db) == []


def test_drift_is_shown_and_reverted(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a", "b", "c"])
    reconcile(db, tasks)
    with db.session() as session:
        spec = session.scalar(select(Task.spec).where(Task.name == "a"))
        assert spec is not None
        session.execute(
            update(Task).where(Task.name == "a").values(spec={**spec, "owner": "mallory"})
        )
        session.execute(update(Task).where(Task.name == "b").values(enabled=False))
    plan = reconcile(db, tasks, dry_run=True).plan
    assert plan.to_dict()["update"] == [
        {"name": "a", "changes": {"owner": {"old": "mallory", "new": "billing"}}},
        {"name": "b", "changes": {"enabled": {"old": False, "new": True}}},
    ]
    reconcile(db, tasks)
    assert not reconcile(db, tasks, dry_run=True).plan


def test_one_changed_file_writes_only_that_tasks_row(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    names = [f"t{i:03d}" for i in range(300)]
    write_tasks(tasks, names)
    reconcile(db, tasks)
    (tasks / "t123.yaml").write_text(task_yaml("t123", crontab="0 2 * * *"))
    writes: list[tuple[str, int]] = []

    def listener(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        words = statement.split()
        if words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if words[0].upper() == "INSERT" else words[1]
            writes.append((f"{words[0].lower()} {table}", len(params) if many else 1))

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        result = reconcile(db, tasks)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert [c.name for c in result.plan.updates] == ["t123"]
    # The task's row, the change marker and the apply log; one row each.
    assert sorted(writes) == [
        ("insert applies", 1),
        ("update change_marker", 1),
        ("update tasks", 1),
    ]


def test_git_commit_and_dirty_flag_are_recorded(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tasks = repo / "tasks.d"
    write_tasks(tasks, ["a"])
    assert git_info(tasks).commit is None  # not a checkout yet
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "tasks")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git_info(tasks).dirty is False
    reconcile(db, tasks)
    (tasks / "b.yaml").write_text(task_yaml("b"))
    reconcile(db, tasks)
    first, second = records(db)
    assert (first.git_commit, first.git_dirty) == (head, False)
    assert (second.git_commit, second.git_dirty) == (head, True)
    outside = tmp_path / "plain"
    write_tasks(outside, ["c"])
    reconcile(db, outside, allow_mass_delete=True)
    assert (records(db)[-1].git_commit, records(db)[-1].git_dirty) == (None, None)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def pushed_clone(tmp_path: Path) -> tuple[Path, Path]:
    """An author's repository whose first commit (``tasks.d/a.yaml``) is pushed to a bare
    upstream, and a clone of that upstream: ``(author, clone)``."""
    upstream, author, clone = tmp_path / "upstream.git", tmp_path / "author", tmp_path / "co"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    git(tmp_path, "clone", "-q", str(upstream), str(author))
    write_tasks(author / "tasks.d", ["a"])
    git(author, "checkout", "-q", "-b", "main")
    git(author, "add", ".")
    git(author, "commit", "-q", "-m", "first")
    git(author, "push", "-q", "origin", "main")
    git(tmp_path, "clone", "-q", "-b", "main", str(upstream), str(clone))
    return author, clone


# --- processes ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_two_reconcilers_started_together_both_succeed_and_converge(
    database_url: str, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, [f"t{i:03d}" for i in range(200)])
    Database.open(database_url).dispose()
    argv = reconcile_argv("apply", "--tasks-dir", str(tasks), "--database-url", database_url)
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    applied = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert applied == [
        "Applied: 200 created, 0 updated, 0 deleted.",
        "No changes. Nothing applied.",
    ]
    db = Database.open(database_url)
    try:
        assert len(live_names(db)) == 200
        assert len(records(db)) == 1
    finally:
        db.dispose()


@pytest.mark.e2e
@pytest.mark.postgres
def test_sigkill_during_10000_creates_leaves_the_old_state(
    postgres_url: str, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    write_many(tasks, 10_000)
    Database.open(postgres_url).dispose()
    with (
        psycopg.connect(postgres_url, autocommit=True) as blocker,
        psycopg.connect(postgres_url, autocommit=True) as observer,
    ):
        # Hold the apply log: the reconciler writes all 10,000 rows, then waits on the
        # log's insert inside its transaction - mid-apply, observably.
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE applies IN ACCESS EXCLUSIVE MODE")
        argv = reconcile_argv("apply", "--tasks-dir", str(tasks), "--database-url", postgres_url)
        with Process(argv, tmp_path / "apply.log") as proc:
            wait_for(
                lambda: waiting_on_applies(observer) or exited(proc),
                60,
                message="apply blocked mid-way",
            )
            assert not exited(proc), proc.output()
            proc.kill(signal.SIGKILL)
            proc.popen.wait(10)
        blocker.execute("ROLLBACK")
    db = Database.open(postgres_url)
    try:
        assert live_names(db) == [] and records(db) == []
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Task)) == 0
        result = reconcile(db, tasks)
        assert len(result.plan.creates) == 10_000
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Task)) == 10_000
    finally:
        db.dispose()


def write_many(directory: Path, count: int, per_file: int = 500) -> None:
    """``count`` tasks in files of ``per_file`` documents (files stay under 1 MiB)."""
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, per_file):
        docs = (task_yaml(f"t{i:05d}") for i in range(start, min(count, start + per_file)))
        (directory / f"batch{start:05d}.yaml").write_text("---\n".join(docs))


def exited(proc: Process) -> bool:
    return proc.popen.poll() is not None


def waiting_on_applies(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO applies%'"
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.e2e
def test_sigkill_on_sqlite_leaves_old_or_new_never_a_mix(sqlite_url: str, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write_many(tasks, 10_000)
    Database.open(sqlite_url).dispose()
    wal = Path(sqlite_url.removeprefix("sqlite:///") + "-wal")
    start = wal.stat().st_size if wal.exists() else 0
    argv = reconcile_argv("apply", "--tasks-dir", str(tasks), "--database-url", sqlite_url)
    with Process(argv, tmp_path / "apply.log") as proc:
        # Pages of the open transaction spill into the WAL before it commits.
        wait_for(
            lambda: (
                proc.popen.poll() is not None
                or (wal.exists() and wal.stat().st_size > start + 200_000)
            ),
            60,
        )
        proc.kill(signal.SIGKILL)
        proc.popen.wait(10)
    db = Database.open(sqlite_url)
    try:
        with db.session() as session:
            count = session.scalar(select(func.count()).select_from(Task))
        assert count in (0, 10_000)
        assert len(records(db)) == (1 if count else 0)
    finally:
        db.dispose()
