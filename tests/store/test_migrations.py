"""The alembic migrations build exactly the schema of reconciler.store.tables, on every backend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import func, select

from reconciler.cli import main
from reconciler.errors import DatabaseUnavailable
from reconciler.store.database import Database, alembic_config, head_revision
from reconciler.store.tables import Base, ChangeMarker
from tests.cli.test_list_columns import TASKS_0001, row_0001
from tests.factories import spec
from tests.support import ROOT

COUNT = "calendar_skipped_count"


def test_migrations_match_the_models(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        assert db.current_revision() == head_revision()
    finally:
        db.dispose()


def test_upgrade_creates_the_change_marker_row_and_is_idempotent(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        assert db.upgrade() is False
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(ChangeMarker)) == 1
            assert session.scalar(select(ChangeMarker.seq).where(ChangeMarker.id == 1)) == 0
    finally:
        db.dispose()


def test_open_without_upgrade_leaves_an_empty_database(database_url: str) -> None:
    db = Database.open(database_url, upgrade=False)
    try:
        assert db.current_revision() is None
        assert db.upgrade() is True
        assert db.current_revision() == head_revision()
    finally:
        db.dispose()


def test_0011_counts_calendar_skips_apart_and_its_downgrade_folds_them_back(
    database_url: str,
) -> None:
    tasks = sa.table("tasks", *(sa.column(c) for c in ("name", "skipped_count", COUNT)))
    db = Database.open(database_url, upgrade=False)
    try:
        with db.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0010")
            connection.execute(
                sa.insert(TASKS_0001),
                [row_0001(spec("a")) | {"skipped_count": 3}, row_0001(spec("b"))],
            )
        assert db.upgrade() is True
        counts = select(tasks.c.name, tasks.c.skipped_count, tasks.c[COUNT]).order_by("name")
        with db.engine.begin() as connection:
            assert connection.execute(counts).all() == [("a", 3, 0), ("b", 0, 0)]
            connection.execute(sa.update(tasks).where(tasks.c.name == "a").values({COUNT: 2}))
            command.downgrade(alembic_config(connection), "0010")
            names = {c["name"] for c in sa.inspect(connection).get_columns("tasks")}
            assert COUNT not in names
            assert connection.execute(
                select(tasks.c.name, tasks.c.skipped_count).order_by("name")
            ).all() == [("a", 5), ("b", 0)]
        assert db.upgrade() is True
        assert db.current_revision() == head_revision()
    finally:
        db.dispose()


@pytest.mark.e2e
def test_concurrent_upgrades_of_a_fresh_database_both_succeed(database_url: str) -> None:
    code = (
        "import sys; from reconciler.store.database import Database; "
        "Database.open(sys.argv[1]).dispose()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    db = Database.open(database_url, upgrade=False)
    try:
        assert db.current_revision() == head_revision()
    finally:
        db.dispose()


def test_opening_a_new_sqlite_file_another_process_is_writing_waits_for_it(
    tmp_path: Path,
) -> None:
    """Switching a new file to WAL while another connection writes it is "database is
    locked" at once in SQLite (no busy timeout): two processes starting on a fresh
    database failed that way now and then. Opening waits for the writer instead."""
    path = tmp_path / "state.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE busy (i INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO busy VALUES (1)")
    outcome: list[object] = []

    def open_database() -> None:
        try:
            Database.open(f"sqlite:///{path}").dispose()
            outcome.append("opened")
        except Exception as exc:  # reported below
            outcome.append(exc)

    opener = threading.Thread(target=open_database)
    opener.start()
    opener.join(timeout=0.5)  # still waiting: it neither failed nor opened past the lock
    assert outcome == [] and opener.is_alive()
    writer.execute("COMMIT")
    opener.join(timeout=30)
    writer.close()
    assert outcome == ["opened"]
    db = Database.open(f"sqlite:///{path}", upgrade=False)
    try:
        assert db.current_revision() == head_revision()
    finally:
        db.dispose()


def test_db_cli_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    def db(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, ["db", *args, "--database-url", url])
        assert result.exit_code == code, result.output
        return result.stdout.strip()

    # Behind exits 1, so a deploy job can gate on it.
    assert db("current", code=1) == (
        f"none (behind: head is {head_revision()}; run: reconcile db upgrade)"
    )
    assert db("upgrade") == f"upgraded to {head_revision()}"
    assert db("upgrade") == f"already at {head_revision()} (head)"
    assert db("current") == f"{head_revision()} (head)"


def test_a_database_from_a_newer_version_is_refused_clearly(sqlite_url: str) -> None:
    db = Database.open(sqlite_url)
    try:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(DatabaseUnavailable, match="at schema revision 9999, which this"):
            db.upgrade()
    finally:
        db.dispose()
