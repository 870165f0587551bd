"""``reconcile import FILE.json``: the old web API's task payloads as task files.

See docs/import.md.

Parses options, calls ``reconciler.files.imports.plan.import_file`` and says what it
wrote, which names it changed, and what to run next.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, tasks_dir_option
from reconciler.files.imports.plan import ImportedTask, import_file
from reconciler.settings import Settings


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--owner",
    default=None,
    metavar="NAME",
    help="Owner of the imported tasks (who may read their history); needed unless every "
    "payload has an 'owner'.",
)
@tasks_dir_option("; files go to its imported/ folder.")
@format_option("text", "json")
@handle_errors
def import_(file: Path, owner: str | None, tasks_dir: str | None, output_format: str) -> None:
    """Turn task payloads of the old web API (one object or a list) into YAML task files.

    Every payload is checked before anything is written; an existing file is never
    overwritten. Old names that are not valid identities are turned into one.
    """
    directory = Settings.resolve(tasks_dir=tasks_dir).tasks_dir
    imported = import_file(file, tasks_dir=directory, owner=owner.strip() if owner else None)
    if output_format == "json":
        echo_json({"imported": [_as_json(task) for task in imported]})
        return
    if not imported:
        click.echo(f"{file} holds no payloads; nothing to import")
        return
    for task in imported:
        click.echo(f"+ {task.spec.name} ({task.spec.type}) -> {task.path}")
        for note in task.notes:
            click.echo(f"    note: {note}")
    count = len(imported)
    click.echo(
        f"Imported {count} task{'' if count == 1 else 's'}. Check them with "
        f"`reconcile validate`, then commit them."
    )


def _as_json(task: ImportedTask) -> dict[str, object]:
    return {
        "payload": task.index,
        "name": task.spec.name,
        "original_name": task.original_name,
        "type": task.spec.type,
        "path": str(task.path),
        "notes": list(task.notes),
    }
