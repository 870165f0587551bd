"""One handle on the database: the engine, sessions, and the schema brought up to date.

``Database.open(url)`` is what every command, the Beat scheduler, tracking and the
HTTP endpoint call; it runs the alembic migrations first (DESIGN: every command that
opens the database upgrades it). Upgrades are safe to run from several processes at
once: they serialise on a database lock and the later ones find nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from reconciler.errors import ConfigError, DatabaseUnavailable
from reconciler.store.db import make_engine, session_factory

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


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _known_revision(revision: str) -> bool:
    scripts = ScriptDirectory.from_config(alembic_config())
    return revision in {script.revision for script in scripts.walk_revisions()}


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(
        cls, url: str, *, upgrade: bool = True, create: bool = True, **engine_kwargs: Any
    ) -> Database:
        """Connect (and by default migrate); DatabaseUnavailable when it cannot be reached.

        ``create=False`` leaves a missing SQLite file uncreated (a dry run writes nothing).
        """
        engine_kwargs.setdefault("json_serializer", serialize_json)
        try:
            engine = make_engine(url, create=create, **engine_kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(
                f"invalid database URL {url!r}: {exc}; use e.g. sqlite:///path/state.db or "
                f"postgresql://user@host/dbname (--database-url / RECONCILER_DATABASE_URL)"
            ) from exc
        database = cls(engine, session_factory(engine))
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
        with unavailable_as_error(self.engine), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def upgrade(self) -> bool:
        """Bring the schema to the newest revision; True when something was migrated."""
        from alembic import command

        head = head_revision()
        current = self.current_revision()
        if current == head:
            return False
        if current is not None and not _known_revision(current):
            raise DatabaseUnavailable(
                f"the database {describe_url(self.engine)} is at schema revision {current}, "
                f"which this version of celery-reconciler does not know (its newest is "
                f"{head}); upgrade celery-reconciler"
            )
        with (
            unavailable_as_error(self.engine),
            self.engine.connect() as connection,
            connection.begin(),
        ):
            # Serialise concurrent upgrades: the first migrates, the others wait for its
            # commit and then find the schema at head.
            if self.dialect == "postgresql":
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


def _is_connect_error(exc: DBAPIError) -> bool:
    kind = type(exc.orig)
    if kind.__module__.startswith("sqlite3"):
        # SQLite's OperationalError also means "locked" or "no such table"; only a file
        # that cannot be opened is a database that is away.
        return "unable to open" in str(exc.orig) or "disk I/O" in str(exc.orig)
    # psycopg: the exact classes for connection failures (subclasses such as
    # LockNotAvailable or QueryCanceled are not outages).
    return kind.__name__ in {"OperationalError", "InterfaceError"}


def first_line(error: BaseException) -> str:
    """The first line of a database error (the driver's, when SQLAlchemy wraps one), or
    its class name when it says nothing."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """``DatabaseUnavailable`` for a failed connection or read, naming the error."""
    return DatabaseUnavailable(f"database unavailable: {first_line(error)}")
