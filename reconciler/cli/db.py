"""``reconcile db upgrade`` and ``reconcile db current``: the schema migrations by hand.

Every command that opens the database upgrades it anyway; these are for operators who
migrate as a separate deploy step, or want to see where a database stands.
"""

from __future__ import annotations

import click

from reconciler.cli.options import handle_errors, settings_options
from reconciler.settings import Settings
from reconciler.store.database import Database, head_revision


@click.group("db")
def db() -> None:
    """The database schema: upgrade it, or show its revision."""


@db.command("upgrade")
@settings_options
@handle_errors
def upgrade(settings: Settings) -> None:
    """Run the migrations up to the newest revision (safe to run concurrently)."""
    database = Database.open(settings.database_url, upgrade=False)
    try:
        changed = database.upgrade()
    finally:
        database.dispose()
    head = head_revision()
    click.echo(f"upgraded to {head}" if changed else f"already at {head} (head)")


@db.command("current")
@settings_options
@handle_errors
def current(settings: Settings) -> None:
    """Print the database's schema revision, and what to run when it is behind."""
    database = Database.open(settings.database_url, upgrade=False)
    try:
        revision = database.current_revision()
    finally:
        database.dispose()
    head = head_revision()
    if revision == head:
        click.echo(f"{revision} (head)")
    else:
        shown = revision or "none"
        click.echo(f"{shown} (head is {head}; run: reconcile db upgrade)")
