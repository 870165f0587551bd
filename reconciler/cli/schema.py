"""``reconcile schema``: print the JSON Schema of a task file.

``make schema`` writes it to ``schemas/task.schema.json`` (``--document defaults`` to
``schemas/defaults.schema.json``, ``--document calendar`` to ``schemas/calendar.schema.json``);
editors use those copies.
"""

from __future__ import annotations

import click

from reconciler.cli.options import handle_errors


@click.command()
@click.option(
    "--document",
    type=click.Choice(["task", "defaults", "calendar"]),
    default="task",
    show_default=True,
    help="The schema of a task, of the kind: defaults document or of a kind: calendar one.",
)
@handle_errors
def schema(document: str) -> None:
    """Print the JSON Schema of a task file, of the defaults document or of a calendar.

    schemas/task.schema.json, schemas/defaults.schema.json and schemas/calendar.schema.json
    hold them (make schema)."""
    # pydantic: not for --help
    from reconciler.files.schema import render, render_calendar, render_defaults

    renders = {"task": render, "defaults": render_defaults, "calendar": render_calendar}
    click.echo(renders[document](), nl=False)
