"""One handle on the database: the engine, sessions, and the schema brought up to date.

``Database.open(url)`` is what every command, the Beat scheduler, tracking and the
HTTP endpoint call; it upgrades the schema first (DESIGN: every command that opens
the database upgrades it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reconciler.store.db import make_engine, session_factory


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True, **engine_kwargs: Any) -> Database:
        engine = make_engine(url, **engine_kwargs)
        database = cls(engine, session_factory(engine))
        if upgrade:
            database.upgrade()
        return database

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Bring the schema to the newest version."""
        from reconciler.store.tables import Base

        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
