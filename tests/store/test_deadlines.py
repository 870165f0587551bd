"""Each role's deadlines reach the database, and a stalled round trip fails in time.

The settings are read back from PostgreSQL (``pg_settings``) and from libpq; stalls are
made by ``tests.faultproxy.FaultProxy`` between the store and the real PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from reconciler.errors import DatabaseUnavailable, LockTimeout
from reconciler.store import scheduling, stall
from reconciler.store import tasks as store
from reconciler.store.database import Database
from reconciler.store.deadlines import BEAT, COMMAND, ROLES, SERVE, WATCH, Deadlines
from reconciler.store.reads.reader import for_reading, read
from tests.faultproxy import FaultProxy, through


@pytest.mark.postgres
@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_sets_its_timeouts_in_postgresql(postgres_url: str, role: str) -> None:
    deadlines = ROLES[role]
    database = Database.open(postgres_url, deadlines=deadlines)
    try:
        with database.engine.connect() as connection:
            shown: dict[str, str] = dict(
                connection.execute(
                    text(
                        "SELECT name, setting FROM pg_settings WHERE name IN ('statement_timeout',"
                        " 'lock_timeout', 'idle_in_transaction_session_timeout')"
                    )
                ).all()
            )
            name = connection.scalar(text("SHOW application_name"))
            client = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        database.dispose()
    assert shown == {
        "statement_timeout": str(int(deadlines.statement * 1000)),
        "lock_timeout": str(int(deadlines.lock * 1000)),
        "idle_in_transaction_session_timeout": str(int(deadlines.idle_in_transaction * 1000)),
    }
    assert name == f"reconciler-{role}"
    assert client["connect_timeout"] == str(deadlines.connect)
    assert client["keepalives"] == "1"
    assert client["keepalives_idle"] == str(deadlines.keepalive_idle)
    assert client["tcp_user_timeout"] == str(deadlines.tcp_user_timeout)


@pytest.mark.postgres
def test_settings_in_the_url_win_over_the_roles(postgres_url: str) -> None:
    url = f"{postgres_url}?options=-c%20statement_timeout%3D1234&application_name=mine"
    database = Database.open(url, deadlines=BEAT)
    try:
        with database.engine.connect() as connection:
            assert connection.scalar(text("SHOW statement_timeout")) == "1234ms"
            assert connection.scalar(text("SHOW lock_timeout")) == "2s"  # the role's still
            assert connection.scalar(text("SHOW application_name")) == "mine"
    finally:
        database.dispose()


@pytest.mark.postgres
def test_the_endpoints_own_connections_have_the_serve_deadlines(postgres_url: str) -> None:
    reading = for_reading(Database.open(postgres_url, deadlines=SERVE))
    try:
        assert reading.deadlines is SERVE
        shown = read(reading, lambda s: s.scalar(text("SHOW idle_in_transaction_session_timeout")))
        assert shown == "5s"
    finally:
        reading.dispose()


def test_sqlite_busy_timeout_is_the_roles_and_the_apply_lock_restores_it(tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'state.db'}", deadlines=BEAT)
    try:
        with database.session() as session:
            assert session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        with database.session() as session:
            store.lock(session, 0.25)
            assert session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        database.dispose()


def _stalled_call(database: Database) -> tuple[float, BaseException]:
    started = time.monotonic()
    with (
        pytest.raises(DatabaseUnavailable) as raised,
        scheduling.transaction(database) as session,
    ):
        session.execute(text("SELECT 1"))
    return time.monotonic() - started, raised.value


@pytest.mark.postgres
def test_a_database_that_stops_answering_fails_the_read_within_the_deadline(
    postgres_url: str, proxy: FaultProxy
) -> None:
    Database.open(postgres_url).dispose()
    database = Database.open(through(postgres_url, proxy), deadlines=BEAT, upgrade=False)
    try:
        with scheduling.transaction(database) as session:
            session.execute(text("SELECT 1"))  # a pooled connection, answered
        proxy.pause("down")
        # The pool's ping stalls (it has the connect timeout), then so does the new connection.
        took, error = _stalled_call(database)
        print(f"stalled ping and connect failed after {took:.2f} s: {error}")
        assert 2 * BEAT.connect - 0.5 <= took <= 2 * BEAT.connect + 1.5
        took, error = _stalled_call(database)
        print(f"stalled connect failed after {took:.2f} s: {error}")
        assert took <= BEAT.connect + 1.5
        proxy.resume()
        with scheduling.transaction(database) as session:
            assert session.scalar(text("SELECT 2")) == 2
    finally:
        proxy.resume()
        database.dispose()


@pytest.mark.postgres
def test_a_stalled_read_says_that_it_got_no_answer(postgres_url: str, proxy: FaultProxy) -> None:
    quick = Deadlines("test", connect=2, statement=0.5, lock=0.5, idle_in_transaction=5, busy=1)
    Database.open(postgres_url).dispose()
    database = Database.open(
        through(postgres_url, proxy), deadlines=quick, upgrade=False, pool_pre_ping=False
    )
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            proxy.pause("down")
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                connection.execute(text("SELECT 1"))
            took = time.monotonic() - started
        assert stall.no_answer(raised.value)
        assert "no answer from the database within" in str(raised.value)
        assert quick.read - 0.1 <= took <= quick.read + 0.5
    finally:
        proxy.resume()
        database.dispose()


@pytest.mark.postgres
def test_a_cut_off_ends_a_stalled_wait_at_once(postgres_url: str, proxy: FaultProxy) -> None:
    Database.open(postgres_url).dispose()
    database = Database.open(through(postgres_url, proxy), deadlines=COMMAND, upgrade=False)
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            proxy.pause("down")
            threading.Timer(0.5, stall.cut_off, args=(0.0,)).start()
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                connection.execute(text("SELECT 1"))
            took = time.monotonic() - started
        assert stall.no_answer(raised.value)
        assert took < 1.5  # COMMAND's own deadline is 31 s
    finally:
        stall.reset_cut_off()
        proxy.resume()
        database.dispose()


@pytest.mark.postgres
def test_the_apply_lock_waits_its_lock_timeout_past_the_roles_statement_timeout(
    postgres_url: str,
) -> None:
    quick = Deadlines("test", connect=2, statement=1, lock=1, idle_in_transaction=10, busy=1)
    holder = Database.open(postgres_url, deadlines=WATCH)
    waiter = Database.open(postgres_url, deadlines=quick, upgrade=False)
    try:
        released = threading.Event()
        locked = threading.Event()

        def hold() -> None:
            with holder.session() as session:
                store.lock(session, 5)
                locked.set()
                released.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        assert locked.wait(10)
        threading.Timer(2.0, released.set).start()
        started = time.monotonic()
        with waiter.session() as session:
            store.lock(session, 4.0)  # longer than the statement timeout and read deadline
            took = time.monotonic() - started
            # The role's own figures are back for the rest of the transaction.
            assert session.scalar(text("SHOW statement_timeout")) == "1s"
            assert session.scalar(text("SHOW lock_timeout")) == "1s"
        thread.join(10)
        assert 1.5 <= took <= 3.5
        # A wait past --lock-timeout is still the lock timeout, with its own message.
        locked.clear()
        released.clear()
        thread = threading.Thread(target=hold)
        thread.start()
        assert locked.wait(10)
        with (
            pytest.raises(LockTimeout, match=r"held the apply lock for more than 0\.5 s"),
            waiter.session() as session,
        ):
            store.lock(session, 0.5)
        released.set()
        thread.join(10)
    finally:
        holder.dispose()
        waiter.dispose()


@pytest.mark.postgres
def test_the_workers_tracking_writes_with_the_tracking_deadlines(postgres_url: str) -> None:
    from reconciler.tracking import Writer

    Database.open(postgres_url).dispose()
    sessions = Writer(postgres_url)._open()
    with sessions() as session:
        assert session.scalar(text("SHOW application_name")) == "reconciler-tracking"
        assert session.scalar(text("SHOW statement_timeout")) == "10s"
    sessions.kw["bind"].dispose()
