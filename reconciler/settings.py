"""Settings shared by every command: flags, else environment variables, else defaults.

docs/cli.md, "Settings": ``--tasks-dir`` / ``RECONCILER_TASKS_DIR``, ``--database-url`` /
``RECONCILER_DATABASE_URL``, ``--broker-url`` / ``RECONCILER_BROKER_URL``,
``--app`` / ``RECONCILER_APP``. The embedded defaults live under ``./.reconciler``.
The names beats and watch loops report under, and how many beats should be alive
(docs/beat.md, "Heartbeats and names"), are read here too.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ConfigError

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


NAME_LENGTH = 100
"""Longest beat or watch name (room is left for a suffix: docs/beat.md)."""


def process_name(variable: str) -> str:
    """The stable name a beat (``RECONCILER_BEAT_NAME``) or a watch loop
    (``RECONCILER_WATCH_NAME``) reports under: the variable, else the host name."""
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return socket.gethostname()[:NAME_LENGTH] or "localhost"
    name = raw.strip()
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise ConfigError(
            f"{variable}: {raw!r} is not a name: give 1 to {NAME_LENGTH} printable characters"
        )
    return name


def resolve_beats_expected(given: int | None = None) -> int | None:
    """How many beats should be alive: ``given`` (``--beats-expected``), else
    ``RECONCILER_BEATS_EXPECTED``, else None (not checked)."""
    if given is not None:
        return given
    raw = os.environ.get("RECONCILER_BEATS_EXPECTED", "").strip()
    if not raw:
        return None
    try:
        expected = int(raw)
    except ValueError:
        expected = 0
    if expected < 1:
        raise ConfigError(f"RECONCILER_BEATS_EXPECTED: {raw!r} is not a whole number above 0")
    return expected


def resolve_repository_url() -> str | None:
    """The web address of the task files' git repository, ``RECONCILER_REPOSITORY_URL``
    (e.g. ``https://github.com/acme/schedules``): the page links each task's source to
    its commit there (docs/page.md, "A task's page"). None when unset."""
    raw = os.environ.get("RECONCILER_REPOSITORY_URL", "").strip()
    if not raw:
        return None
    if not raw.startswith(("https://", "http://")) or any(c.isspace() for c in raw):
        raise ConfigError(
            f"RECONCILER_REPOSITORY_URL: {raw!r} is not a web address; give the repository's "
            "https:// URL, e.g. https://github.com/acme/schedules"
        )
    return raw.rstrip("/")


DEFAULT_HISTORY_KEEP_DAYS = 90


def resolve_history_keep() -> int:
    """Days of history kept for tasks whose files and defaults set no ``history``:
    ``RECONCILER_HISTORY_KEEP`` (``30`` or ``30d``), else 90 (docs/tracking.md, "Retention")."""
    raw = os.environ.get("RECONCILER_HISTORY_KEEP", "").strip()
    if not raw:
        return DEFAULT_HISTORY_KEEP_DAYS
    number = raw[:-1] if raw.lower().endswith("d") else raw
    try:
        days = int(number)
    except ValueError:
        days = 0
    if not 1 <= days <= 36500:
        raise ConfigError(
            f"RECONCILER_HISTORY_KEEP: {raw!r} is not a number of days from 1 to 36500 "
            "(for example 90 or 90d)"
        )
    return days


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
