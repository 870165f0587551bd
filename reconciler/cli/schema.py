"""``reconcile schema``: print the JSON Schema of a task file.

``make schema`` writes it to ``schemas/task.schema.json``; editors use that copy.
"""

from __future__ import annotations

import click

from reconciler.cli.options import handle_errors
from reconciler.files.schema import render


@click.command()
@handle_errors
def schema() -> None:
    """Print the JSON Schema of a task file (what schemas/task.schema.json holds)."""
    click.echo(render(), nl=False)
