"""``reconcile apply`` (also a bare ``reconcile``): validate, plan and apply, or ``--dry-run``.

Parses the options, calls ``reconciler.apply.reconcile``, prints the plan in the chosen
format, and maps the outcome to exit codes (``--detailed-exitcode``: 2 for changes).
"""

from __future__ import annotations

import sys

import click

from reconciler.cli.options import (
    allow_mass_delete_option,
    echo_json,
    format_option,
    handle_errors,
    lock_timeout_option,
    settings_of,
)
from reconciler.settings import Settings


@click.command("apply")
@settings_of("tasks_dir", "database_url")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; write nothing.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 for no changes, 2 for changes (planned or applied), 1 for an error.",
)
@allow_mass_delete_option
@lock_timeout_option
@format_option("text", "json", "markdown")
@handle_errors
def apply(
    settings: Settings,
    dry_run: bool,
    detailed_exitcode: bool,
    allow_mass_delete: bool,
    lock_timeout: float,
    output_format: str,
) -> None:
    """Validate the task files, plan, and apply the plan in one transaction."""
    # Imported here: ``reconcile --help`` lists these options without the database layer.
    from reconciler.apply import InvalidTasks, reconcile
    from reconciler.cli.planview import (
        applied_line,
        progress_bar,
        render_json,
        render_markdown,
        render_text,
        use_colour,
    )
    from reconciler.store.database import Database

    db = Database.open(settings.database_url, upgrade=not dry_run, create=not dry_run)
    try:
        result = reconcile(
            db,
            settings.tasks_dir,
            dry_run=dry_run,
            allow_mass_delete=allow_mass_delete,
            lock_timeout=lock_timeout,
            progress=progress_bar if output_format == "text" else None,
        )
    except InvalidTasks as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        raise
    finally:
        db.dispose()
    for warning in result.load.warnings:
        click.echo(f"warning: {warning}", err=True)
    plan = result.plan
    if output_format == "json":
        echo_json(render_json(plan))
    elif output_format == "markdown":
        click.echo(render_markdown(plan))
    else:
        click.echo(render_text(plan, colour=use_colour()))
        if not dry_run:
            click.echo(applied_line(plan))
    if dry_run and plan.is_mass_delete() and not allow_mass_delete:
        click.echo(
            "warning: this plan deletes more than half of the tasks; "
            "apply will refuse it without --allow-mass-delete",
            err=True,
        )
    if detailed_exitcode and plan:
        sys.exit(2)
