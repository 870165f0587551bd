"""Settings shared by every command: flags, else environment variables, else defaults.

docs/cli.md, "Settings": ``--tasks-dir`` / ``RECONCILER_TASKS_DIR``, ``--database-url`` /
``RECONCILER_DATABASE_URL``, ``--broker-url`` / ``RECONCILER_BROKER_URL``,
``--app`` / ``RECONCILER_APP``. The embedded defaults live under ``./.reconciler``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path(".reconciler")
DEFAULT_TASKS_DIR = "tasks.d"
DEFAULT_DATABASE_URL = f"sqlite:///{STATE_DIR}/state.db"
DEFAULT_BROKER_URL = f"sqla+sqlite:///{STATE_DIR}/broker.db"
DEFAULT_APP = "reconciler.demo:app"


def resolve_database_url(given: str | None = None, configured: str | None = None) -> str:
    """The database URL: ``given`` (``--database-url``), else ``RECONCILER_DATABASE_URL``,
    else ``configured`` (a Celery app's ``reconciler_database_url``), else the default.

    The one place the variable and the default are read (commands, beat, tracking)."""
    return given or os.environ.get("RECONCILER_DATABASE_URL") or configured or DEFAULT_DATABASE_URL


def resolve_broker_url(given: str | None = None) -> str:
    """The broker URL: ``given`` (``--broker-url``), else ``RECONCILER_BROKER_URL``, else
    the embedded SQLite broker."""
    return given or os.environ.get("RECONCILER_BROKER_URL") or DEFAULT_BROKER_URL


@dataclass(frozen=True)
class Settings:
    tasks_dir: Path
    database_url: str
    broker_url: str
    app: str

    @classmethod
    def resolve(
        cls,
        tasks_dir: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        broker_url: str | None = None,
        app: str | None = None,
    ) -> Settings:
        env = os.environ
        return cls(
            tasks_dir=Path(tasks_dir or env.get("RECONCILER_TASKS_DIR") or DEFAULT_TASKS_DIR),
            database_url=resolve_database_url(database_url),
            broker_url=resolve_broker_url(broker_url),
            app=app or env.get("RECONCILER_APP") or DEFAULT_APP,
        )
