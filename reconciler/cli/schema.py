"""``reconcile schema``: print the JSON Schema of a task file.

``make schema`` writes it to ``schemas/task.schema.json`` (and ``--document defaults`` to
``schemas/defaults.schema.json``); editors use those copies.
"""

from __future__ import annotations

import click

from reconciler.cli.options import handle_errors
from reconciler.files.schema import render, render_defaults


@click.command()
@click.option(
    "--document",
    type=click.Choice(["task", "defaults"]),
    default="task",
    show_default=True,
    help="The schema of a task, or of the kind: defaults document.",
)
@handle_errors
def schema(document: str) -> None:
    """Print the JSON Schema of a task file, or of the defaults document.

    schemas/task.schema.json and schemas/defaults.schema.json hold them (make schema)."""
    click.echo(render() if document == "task" else render_defaults(), nl=False)
