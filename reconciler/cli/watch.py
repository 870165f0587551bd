"""``reconcile watch``: run the reconcile daemon until SIGTERM or SIGINT (then exit 0).

Parses the options, configures logging to stderr (one line per cycle), installs the
signal handlers and runs ``reconciler.ops.watch.Watcher``.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from reconciler.cli.options import (
    allow_mass_delete_option,
    handle_errors,
    lock_timeout_option,
    settings_of,
)
from reconciler.settings import Settings

STOP_GRACE = 0.5
"""Seconds an apply in progress has after SIGTERM before its database waits are ended."""


@click.command("watch")
@settings_of("tasks_dir", "database_url")
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds between full resyncs (these also revert drift).",
)
@click.option(
    "--debounce-ms",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Milliseconds a burst of file events is gathered into one apply.",
)
@click.option(
    "--git-pull",
    "git_pull",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Run 'git pull --ff-only' in the tasks checkout every SECONDS.",
)
@lock_timeout_option
@click.option(
    "--max-backoff",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Longest wait, in seconds, between retries while the database is away.",
)
@allow_mass_delete_option
@handle_errors
def watch(
    settings: Settings,
    resync_interval: float,
    debounce_ms: int,
    git_pull: float | None,
    lock_timeout: float,
    max_backoff: float,
    allow_mass_delete: bool,
) -> None:
    """Apply now, then on every change of the task files and every resync interval."""
    # Imported here: ``reconcile watch --help`` lists the options without the database layer.
    from reconciler.ops.watch import Watcher, WatchOptions
    from reconciler.store import stall
    from reconciler.store.database import Database

    # A malformed URL is a usage error to report now, not an outage to wait out.
    Database.open(settings.database_url, upgrade=False).dispose()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per cycle is ours to write; the libraries' routine chatter is not.
    for noisy in ("alembic", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    watcher = Watcher(
        WatchOptions(
            tasks_dir=settings.tasks_dir,
            database_url=settings.database_url,
            resync_interval=resync_interval,
            debounce_ms=debounce_ms,
            git_pull=git_pull,
            lock_timeout=lock_timeout,
            allow_mass_delete=allow_mass_delete,
            max_backoff=max_backoff,
        )
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("reconciler.watch").info(
            "%s received, stopping", signal.Signals(signum).name
        )
        watcher.stop()
        # An apply in progress may finish if it can within the grace; one waiting for a
        # database that does not answer is ended then (docs/deadlines.md).
        stall.cut_off(STOP_GRACE)
        stall.abandon_connect()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher.run()
