"""A delivery's claim on its execution row: the worker's half of exactly-once execution.

Beat and ``reconcile trigger`` write an execution's row before they publish its message.
When a worker starts a delivery of such a message, tracking claims the row with one
UPDATE keyed by the Celery task id and runs the task only if the claim succeeds; a
delivery of an execution that started or finished elsewhere is counted in the row's
``duplicates`` instead. docs/guarantees.md ("At the worker") states what this promises.

``DeliveryClaims`` makes the claims of a worker process on a connection of their own,
whose deadlines bound the wait for a database that stops answering.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, func, null, or_, update
from sqlalchemy.pool import NullPool

from reconciler.store.database import make_engine
from reconciler.store.deadlines import READ_MARGIN, Deadlines
from reconciler.store.executions import constant, reaped
from reconciler.store.tables import TaskExecution
from reconciler.vocabulary import Status

log = logging.getLogger("reconciler.tracking")

CLAIM_WAIT = 2.0
"""Seconds a claim waits for the database's answer before the delivery runs unclaimed
(at least once); reconnecting first may add up to as much again."""

CLAIMED = "claimed"  # the row was pending or retry (or this delivery may take it over)
DUPLICATE = "duplicate"  # the execution started or finished elsewhere: do not run
UNRECORDED = "unrecorded"  # no row with this id: nothing to claim, run as before
UNAVAILABLE = "unavailable"  # the database did not answer in time: run (at-least-once)


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message, as the worker starts it."""

    celery_task_id: str
    retries: int
    redelivered: bool


@dataclass(frozen=True)
class Claim:
    """What came of a claim: ``outcome`` is one of the four constants above."""

    outcome: str
    status: str | None = None  # the row's status, for a duplicate
    reason: str | None = None  # why the database was unavailable (or the count failed)


def _bind(name: str, type_: Any = None) -> Any:
    return bindparam(f"b_{name}", type_=type_)  # not a column's name: update() reserves those


def claim_statement(redelivered: bool) -> Any:
    """Mark the row claimed by this delivery's attempt if it may run it; one row or none.

    It may when no delivery of this attempt claimed it yet and the row waits for it
    (``pending``, or ``retry`` for this attempt), or this is a later attempt than the
    row knows (a retry that reached a worker before the previous attempt's ``retry``
    step reached the database). A redelivery by the broker may also take over the row
    of its own attempt while it is unfinished (or reaped as lost): its worker was lost
    before acknowledging it. The claim writes only ``claimed_attempt`` (no indexed
    column, no trigger), so it costs one cheap row update; the start itself is
    recorded by tracking's writer as for any execution. A reaped row is reopened.
    """
    table: Table = TaskExecution.__table__  # type: ignore[assignment]
    c = table.c
    attempt = _bind("retries")
    lost = reaped(c)
    waiting = and_(
        c.status.in_([constant(Status.PENDING), constant(Status.RETRY)]), c.retries <= attempt
    )
    unclaimed = or_(
        and_(c.claimed_attempt.is_(None), or_(waiting, c.retries < attempt)),
        c.claimed_attempt < attempt,
    )
    conditions = [unclaimed]
    values: dict[str, Any] = {"claimed_attempt": attempt}
    if redelivered:
        unfinished = c.status.in_(
            [constant(Status.PENDING), constant(Status.RETRY), constant(Status.STARTED)]
        )
        conditions.append(
            and_(
                or_(unfinished, lost),
                func.coalesce(c.claimed_attempt, c.retries) <= attempt,
                c.retries <= attempt,
            )
        )
        values.update(
            status=case((lost, constant(Status.STARTED)), else_=c.status),
            finished_at=case((lost, null()), else_=c.finished_at),
            error=case((lost, null()), else_=c.error),
        )
    return (
        update(table)
        .where(c.celery_task_id == _bind("celery_task_id"), or_(*conditions))
        .values(values)
    )


def duplicate_statement() -> Any:
    """Count a refused delivery in its row; returns the row's status (no row: nothing)."""
    table: Table = TaskExecution.__table__  # type: ignore[assignment]
    c = table.c
    return (
        update(table)
        .where(c.celery_task_id == _bind("celery_task_id"))
        .values(duplicates=c.duplicates + constant(1))
        .returning(c.status)
    )


_STATEMENTS = {True: claim_statement(True), False: claim_statement(False)}
_DUPLICATE = duplicate_statement()


def _params(delivery: Delivery) -> dict[str, Any]:
    return {"b_celery_task_id": delivery.celery_task_id, "b_retries": delivery.retries}


class Uncounted(Exception):
    """The claim was refused, but counting the refusal failed (the database went away
    between the two statements): the delivery still must not run."""


def _refused(status: Any) -> Claim:
    return Claim(UNRECORDED) if status is None else Claim(DUPLICATE, status=str(status))


def claim(connection: Any, delivery: Delivery) -> Claim:
    """Claim the row for ``delivery`` on a SQLAlchemy ``connection`` in autocommit."""
    if connection.execute(_STATEMENTS[delivery.redelivered], _params(delivery)).rowcount:
        return Claim(CLAIMED)
    try:
        ident = {"b_celery_task_id": delivery.celery_task_id}
        return _refused(connection.execute(_DUPLICATE, ident).scalar_one_or_none())
    except Exception as exc:
        raise Uncounted(f"{type(exc).__name__}: {exc}") from exc


class _DriverStatements:
    """The statements as SQL text, prepared when the connection opens and run on libpq's
    connection with psycopg's wait (so its deadlines hold): a claim is on every task's
    path, and SQLAlchemy's machinery cost as much as the round trip
    (docs/design/worker-claim.md)."""

    NAMES = {True: b"reconciler_claim_redelivered", False: b"reconciler_claim"}

    def __init__(self, dialect: Any) -> None:
        from psycopg import generators  # PostgreSQL only

        self.execute = generators.execute  # waits for a statement's results
        positional = {"%(b_celery_task_id)s": "$1", "%(b_retries)s": "$2"}
        self.claim: dict[bool, bytes] = {}
        for key, stmt in _STATEMENTS.items():
            sql = str(stmt.compile(dialect=dialect))
            for named, number in positional.items():
                sql = sql.replace(named, number)
            self.claim[key] = sql.encode()
        self.duplicate = str(_DUPLICATE.compile(dialect=dialect))

    def prepare(self, connection: Any) -> None:
        """Prepare the claims on a new psycopg ``connection`` (in autocommit)."""
        for key, name in self.NAMES.items():
            connection.pgconn.send_prepare(name, self.claim[key])
            _checked(connection, connection.wait(self.execute(connection.pgconn)))

    def run(self, cursor: Any, delivery: Delivery) -> Claim:
        connection = cursor.connection
        pgconn = connection.pgconn
        params = [delivery.celery_task_id.encode(), str(delivery.retries).encode()]
        pgconn.send_query_prepared(self.NAMES[delivery.redelivered], params)
        if _checked(connection, connection.wait(self.execute(pgconn))).command_tuples:
            return Claim(CLAIMED)
        try:
            cursor.execute(self.duplicate, {"b_celery_task_id": delivery.celery_task_id})
            row = cursor.fetchone()
        except Exception as exc:
            raise Uncounted(f"{type(exc).__name__}: {exc}") from exc
        return _refused(None if row is None else row[0])


def _checked(connection: Any, results: list[Any]) -> Any:
    """The one result of a statement run on libpq's connection; its error raised."""
    from psycopg import errors, pq

    (result,) = results
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=connection.info.encoding)
    return result


# --- claims for a worker process ----------------------------------------------------------

RETRY_FIRST = 1.0  # seconds claims are skipped after the database failed to answer one
RETRY_MAX = 15.0  # ... doubling while it keeps failing, up to this


class DeliveryClaims:
    """Claims for one process, each on the claiming thread's own connection.

    A claim waits at most ``wait`` seconds for an answer (the connection's deadlines,
    docs/deadlines.md); one that fails or gets none lets the delivery run unclaimed, and
    the claims after it are skipped at once for a while (1 s, doubling up to 15 s while
    the database stays away) rather than each waiting in turn.
    """

    def __init__(self, database_url: str, wait: float = CLAIM_WAIT) -> None:
        self.database_url = database_url
        self.wait = wait
        self._engine: Any = None
        self._driver: _DriverStatements | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []
        self._skip_until = 0.0
        self._backoff = RETRY_FIRST
        self._reason = ""

    def start(self) -> None:
        """Connect ahead of the first claim (a failure is reported by the claims after)."""
        try:
            self._connection()
        except Exception as exc:  # any driver error: the database is unavailable
            log.debug("execution claims: database not ready yet: %s", exc)
            self._failed(f"{type(exc).__name__}: {exc}")

    def claim(self, delivery: Delivery) -> Claim:
        if time.monotonic() < self._skip_until:
            return Claim(UNAVAILABLE, reason=self._reason)
        try:
            connection = self._connection()
            if self._driver is not None:
                result = self._driver.run(connection, delivery)
            else:
                result = claim(connection, delivery)
        except Uncounted as exc:
            self._failed(str(exc))
            return Claim(DUPLICATE, reason=str(exc))
        except Exception as exc:  # any driver error: the database is unavailable
            self._failed(f"{type(exc).__name__}: {exc}")
            return Claim(UNAVAILABLE, reason=self._reason)
        self._backoff = RETRY_FIRST
        return result

    def _failed(self, reason: str) -> None:
        self._disconnect()
        self._reason = reason.strip()
        self._skip_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RETRY_MAX)

    def close(self) -> None:
        """Close every connection (tests, uninstall)."""
        with self._lock:
            opened, self._open = self._open, []
        for connection in opened:
            with contextlib.suppress(Exception):
                connection.close()
        if self._engine is not None:
            self._engine.dispose()

    def _connection(self) -> Any:
        """This thread's connection: psycopg's cursor on PostgreSQL, else SQLAlchemy's."""
        current = getattr(self._local, "connection", None)
        if current is not None:
            return current[1]
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = claims_engine(self.database_url, self.wait)
                    if self._engine.dialect.name == "postgresql":
                        self._driver = _DriverStatements(self._engine.dialect)
        if self._driver is not None:
            raw = self._engine.raw_connection()
            raw.driver_connection.autocommit = True
            try:
                self._driver.prepare(raw.driver_connection)
            except BaseException:
                raw.invalidate()
                raise
            current = (raw, raw.driver_connection.cursor())
        else:
            sqlalchemy_connection = self._engine.connect()
            current = (sqlalchemy_connection, sqlalchemy_connection)
        with self._lock:
            self._open.append(current[0])
        self._local.connection = current
        return current[1]

    def _disconnect(self) -> None:
        current = getattr(self._local, "connection", None)
        self._local.connection = None
        if current is None:
            return
        with self._lock:
            if current[0] in self._open:
                self._open.remove(current[0])
        try:
            current[0].invalidate()
            current[0].close()
        except Exception:  # closing a broken connection may fail too
            log.debug("execution claims: closing the connection failed", exc_info=True)


def claims_engine(database_url: str, wait: float) -> Any:
    """An engine for claims: autocommit (one round trip per statement), no ping before
    use, and every wait bounded by ``wait``: connecting, locks, statements, a silent peer
    (docs/deadlines.md). Claims are not flushed to disk before they count: see
    docs/guarantees.md, "At the worker"."""
    statement = max(0.5, wait - READ_MARGIN)  # the client gives up READ_MARGIN later
    deadlines = Deadlines(
        "claims",
        connect=max(2, math.ceil(wait)),
        statement=statement,
        lock=statement,
        idle_in_transaction=statement,
        busy=wait,
    )
    # Each claiming thread keeps its connection: no pool to wait for, none to ping.
    if database_url.startswith("sqlite"):
        # Never creates the file: a worker without the database has nothing to claim.
        return make_engine(
            database_url,
            create=False,
            deadlines=deadlines,
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        )
    return make_engine(
        database_url,
        deadlines=deadlines,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        pool_pre_ping=False,
        connect_args={"options": "-c synchronous_commit=off"},
    )
