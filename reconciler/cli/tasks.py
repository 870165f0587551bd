"""``reconcile tasks``: the Celery task names the app registers (docs/cli.md).

Imports the app named by ``--app`` / ``RECONCILER_APP`` (the demo app by default) and
prints its own task names, one per line, or as JSON for scripts.
"""

from __future__ import annotations

import click

from reconciler.cli.options import echo_json, format_option, handle_errors
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.settings import Settings


@click.command("tasks")
@click.option(
    "--app",
    "app_path",
    default=None,
    metavar="MODULE:ATTR",
    help="Celery app as module:attr [env RECONCILER_APP; default the demo app]",
)
@format_option("text", "json")
@handle_errors
def tasks(app_path: str | None, output_format: str) -> None:
    """List the Celery task names the app registers (without Celery's own celery.*)."""
    path = Settings.resolve(app=app_path).app
    names = task_names(path)
    if output_format == "json":
        echo_json({"app": path, "tasks": names})
        return
    for name in names:
        click.echo(name)
    if not names:
        click.echo(f"{path} registers no tasks of its own", err=True)


def task_names(path: str) -> list[str]:
    """The registered names of the app at ``path``; any failure to load it is a ConfigError."""
    from reconciler.celeryapp import load_app, registered_task_names  # Celery: not for --help

    try:
        return registered_task_names(load_app(path))
    except ReconcilerError:
        raise
    except Exception as exc:  # the user's module raised while it was imported
        raise ConfigError(
            f"--app {path}: importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
