"""One handle on the database: engines with their deadlines, sessions, and the schema
brought up to date.

``Database.open(url)`` is what every command, the Beat scheduler and the HTTP endpoint
call; it runs the alembic migrations first (every command that opens the database
upgrades it: docs/plan-and-apply.md, "The database schema"). Upgrades are safe to run
from several processes at once: they serialise on a database lock and the later ones
find nothing to do. Whatever opens only an engine (tracking, worker claims) gets it
from ``make_engine``, with its role's deadlines (docs/deadlines.md).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    StatementError,
)
from sqlalchemy.orm import Session, sessionmaker

from reconciler.errors import ConfigError, DatabaseUnavailable, StateRefused
from reconciler.store.deadlines import COMMAND, MIGRATION, Deadlines

if TYPE_CHECKING:  # alembic is imported only to migrate: a worker's engine never needs it
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key for schema upgrades (any constant; "reconcil" in ASCII).
UPGRADE_LOCK_KEY = 0x7265636F6E63696C


class RawJSON(str):
    """JSON text stored verbatim in a JSON column (the store writes task specs this way,
    so the reconciler can compare the stored text with the desired one without parsing)."""


def serialize_json(value: object) -> str:
    if isinstance(value, RawJSON):
        return str(value)
    return json.dumps(value)


# PostgreSQL URLs written for other drivers, read as psycopg 3 (docs/task-files.md).
_PSYCOPG_ALIASES = ("postgresql", "postgres", "postgresql+psycopg2", "postgres+psycopg2")


def normalise_url(url: str) -> str:
    """``postgresql://`` (and ``postgresql+psycopg2://``, common in existing apps) means
    the psycopg 3 driver we install; another PostgreSQL driver is refused, naming the form
    to use (ArgumentError, which ``Database.open`` reports as a bad URL)."""
    parsed = make_url(url)
    if parsed.drivername in _PSYCOPG_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        raise ArgumentError(
            f"the driver {parsed.drivername!r} is not supported; write postgresql://... "
            f"(the psycopg 3 driver is used)"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str, *, create: bool = True, deadlines: Deadlines = COMMAND, **kwargs: Any
) -> Engine:
    """An engine for ``url`` whose sessions keep ``deadlines`` (docs/deadlines.md).

    ``create=False``: an SQLite file that does not exist yet is not created (nor its
    directory); an empty in-memory database stands in for it."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            if not create and not Path(database).exists():
                url = "sqlite://"
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", deadlines.busy)
        engine = create_engine(url, **kwargs)

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_connection, deadlines.busy)

        event.listen(engine, "connect", pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        _keep_deadlines(engine, deadlines, pinged=bool(kwargs["pool_pre_ping"]))
    return engine


def _keep_deadlines(engine: Engine, deadlines: Deadlines, *, pinged: bool) -> None:
    """Every connection of ``engine`` gets the role's timeouts and a watched socket.

    ``pinged``: the pool pings a connection before reusing it; the ping is given the
    connect timeout rather than the read deadline (it is as light as a connect, and a
    ping that gets no answer is followed by a connect)."""
    from reconciler.store import stall  # psycopg: imported only for PostgreSQL

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return stall.connect(deadlines, *cargs, **stall.parameters(deadlines, cparams))

    event.listen(engine, "do_connect", connect)
    if pinged:

        def checkin(dbapi_connection: Any, _record: Any) -> None:
            stall.ping_within(dbapi_connection, deadlines.connect)

        def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            stall.ping_within(dbapi_connection, None)  # pinged (or fresh): in use now

        event.listen(engine, "checkin", checkin)
        event.listen(engine, "checkout", checkout)


def _sqlite_pragmas(dbapi_connection: Any, busy: float) -> None:
    cursor = dbapi_connection.cursor()
    _write_ahead_log(cursor, busy)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: sqlite3.Cursor, busy: float) -> None:
    """WAL mode, kept in the file once set. Switching a new file to it needs the file to
    itself, and while another connection writes, SQLite answers "database is locked" at
    once instead of waiting its busy timeout: two processes starting on a fresh database
    (``reconcile watch`` and ``serve``) could fail that way. Retried until the timeout."""
    deadline = time.monotonic() + busy
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass(frozen=True)
class Checkpoint:
    """What ``PRAGMA wal_checkpoint`` answered: ``busy`` when it could not finish (readers
    or a writer held on past its wait), else the log was copied into the file and cut."""

    busy: bool
    frames: int


def checkpoint_sqlite(path: Path, wait: float) -> Checkpoint | None:
    """Copy the write-ahead log of the SQLite file ``path`` into it and cut the log to zero
    bytes (``wal_checkpoint(TRUNCATE)``), waiting at most ``wait`` seconds for readers and
    writers (new writers wait behind it meanwhile). SQLite's own checkpoints never shrink
    the log, and cannot restart it while readers keep using it. None when there is no file;
    a file not in WAL mode is left as it is. Raises ``sqlite3.Error``."""
    if not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=wait)
    try:
        busy, frames, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    return Checkpoint(bool(busy), max(int(frames), 0))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def known_revision(revision: str) -> bool:
    """True when ``revision`` is one of this version's migrations (else a newer one's)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return revision in {script.revision for script in scripts.walk_revisions()}


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    deadlines: Deadlines = COMMAND

    @classmethod
    def open(
        cls,
        url: str,
        *,
        upgrade: bool = True,
        create: bool = True,
        deadlines: Deadlines = COMMAND,
        **engine_kwargs: Any,
    ) -> Database:
        """Connect (and by default migrate); DatabaseUnavailable when it cannot be reached.

        ``deadlines``: the role's timeouts (``reconciler.store.deadlines``). ``create=False``
        leaves a missing SQLite file uncreated (a dry run writes nothing).
        """
        engine_kwargs.setdefault("json_serializer", serialize_json)
        try:
            engine = make_engine(url, create=create, deadlines=deadlines, **engine_kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(
                f"invalid database URL {url!r}: {exc}; use e.g. sqlite:///path/state.db or "
                f"postgresql://user@host/dbname (--database-url / RECONCILER_DATABASE_URL)"
            ) from exc
        database = cls(engine, session_factory(engine), deadlines)
        if upgrade:
            try:
                database.upgrade()
            except BaseException:
                engine.dispose()
                raise
        return database

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with unavailable_as_error(self.engine), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def upgrade(self) -> bool:
        """Bring the schema to the newest revision; True when something was migrated."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        head = head_revision()
        current = self.current_revision()
        if current == head:
            return False
        if current is not None and not known_revision(current):
            raise DatabaseUnavailable(
                f"the database {describe_url(self.engine)} is at schema revision {current}, "
                f"which this version of celery-reconciler does not know (its newest is "
                f"{head}); upgrade celery-reconciler"
            )
        with (
            unavailable_as_error(self.engine),
            self.engine.connect() as connection,
            connection.begin(),
            ExitStack() as stack,
        ):
            # Serialise concurrent upgrades: the first migrates, the others wait for its
            # commit and then find the schema at head.
            if self.dialect == "postgresql":
                # A migration may rewrite a large table: the migration figures, not the role's.
                for name, value in MIGRATION.server_settings().items():
                    connection.execute(
                        text("SELECT set_config(:name, :value, true)"),
                        {"name": name, "value": value},
                    )
                from reconciler.store import stall  # psycopg: only for PostgreSQL

                raw = connection.connection.dbapi_connection
                stack.enter_context(stall.extended(raw, MIGRATION.read))
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY}
                )
            elif self.dialect == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            if MigrationContext.configure(connection).get_current_revision() == head:
                return False
            command.upgrade(alembic_config(connection), "head")
        return True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def describe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def unavailable_as_error(engine: Engine) -> Iterator[None]:
    """Turn a failed connection into DatabaseUnavailable naming the (password-less) URL."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise DatabaseUnavailable(
                f"cannot reach the database {describe_url(engine)}: {first_line(exc)}; "
                f"check --database-url / RECONCILER_DATABASE_URL and that the server is up"
            ) from exc
        raise


@contextmanager
def refusal_as_error(names: Callable[[], Sequence[str]]) -> Iterator[None]:
    """Turn the database refusing a value (too long, not text, out of range, a constraint)
    into StateRefused naming the task written (or, when the statement wrote several,
    the tasks being written); other errors pass through."""
    try:
        yield
    except (DataError, IntegrityError) as exc:
        reason = first_line(exc)
        named = _written_name(exc.params) or names()
        raise StateRefused(refusal_message(named, reason), reason) from exc
    except StatementError as exc:
        if isinstance(exc, DBAPIError):
            raise
        # A value the driver could not even send (bind processing failed).
        reason = first_line(exc)
        raise StateRefused(refusal_message(names(), reason), reason) from exc
    except (OverflowError, UnicodeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise StateRefused(refusal_message(names(), reason), reason) from exc


def _written_name(params: Any) -> list[str] | None:
    if isinstance(params, Mapping):
        for key in ("name", "b_name", "task_name"):
            if isinstance(params.get(key), str):
                return [params[key]]
    return None


def refusal_message(names: Sequence[str], reason: str) -> str:
    """The one line that says which task (or which of several) the database refused."""
    shown = ", ".join(repr(name) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    which = f"task {shown}" if len(names) == 1 else f"one of the tasks {shown}{more}"
    return f"the database refused to store {which}: {reason}; nothing applied, fix the task file"


def _is_connect_error(exc: DBAPIError) -> bool:
    kind = type(exc.orig)
    if kind.__module__.startswith("sqlite3"):
        # SQLite's OperationalError also means "locked" or "no such table"; only a file
        # that cannot be opened is a database that is away.
        return "unable to open" in str(exc.orig) or "disk I/O" in str(exc.orig)
    # psycopg: connection failures, a connect timeout and a round trip that got no answer
    # (``reconciler.store.stall``) have no SQLSTATE; errors the server reported (such as
    # LockNotAvailable or QueryCanceled) have one and are not outages.
    classes = {cls.__name__ for cls in kind.__mro__}
    return bool(classes & {"OperationalError", "InterfaceError"}) and (
        getattr(exc.orig, "sqlstate", None) is None
    )


def first_line(error: BaseException) -> str:
    """The first line of a database error (the driver's, when SQLAlchemy wraps one), or
    its class name when it says nothing."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """``DatabaseUnavailable`` for a failed connection or read, naming the error."""
    return DatabaseUnavailable(f"database unavailable: {first_line(error)}")
