"""``reconcile db upgrade`` and ``reconcile db current``: the schema migrations by hand.

Every command that opens the database upgrades it anyway; these are for operators who
migrate as a separate deploy step, or want to see where a database stands (``current``
exits 1 unless the schema is at this version's head, so a deploy job can gate on it).
"""

from __future__ import annotations

import sys

import click

from reconciler.cli.options import handle_errors, settings_of
from reconciler.settings import Settings


@click.group("db")
def db() -> None:
    """The database schema: upgrade it, or show its revision."""


@db.command("upgrade")
@settings_of("database_url")
@handle_errors
def upgrade(settings: Settings) -> None:
    """Run the migrations up to the newest revision (safe to run concurrently)."""
    from reconciler.store.database import Database, head_revision  # not for --help

    database = Database.open(settings.database_url, upgrade=False)
    try:
        changed = database.upgrade()
    finally:
        database.dispose()
    head = head_revision()
    click.echo(f"upgraded to {head}" if changed else f"already at {head} (head)")


@db.command("current")
@settings_of("database_url")
@handle_errors
def current(settings: Settings) -> None:
    """Print the database's schema revision; exit 1 unless it is this version's head."""
    from reconciler.store.database import Database, head_revision, known_revision

    database = Database.open(settings.database_url, upgrade=False)
    try:
        revision = database.current_revision()
    finally:
        database.dispose()
    head = head_revision()
    if revision == head:
        click.echo(f"{revision} (head)")
        return
    if revision is None or known_revision(revision):
        click.echo(f"{revision or 'none'} (behind: head is {head}; run: reconcile db upgrade)")
    else:
        click.echo(
            f"{revision} (ahead: this celery-reconciler knows revisions up to {head}; "
            f"the database was migrated by a newer version, so upgrade celery-reconciler)"
        )
    sys.exit(1)
