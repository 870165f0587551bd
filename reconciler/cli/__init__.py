"""The ``reconcile`` command line: a thin click layer over the library.

Each command lives in its own module here and is imported only when it runs, so
``reconcile validate`` never pays for SQLAlchemy or Celery. ``reconcile`` with no
command (or with only options) means ``reconcile apply``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("reconciler.cli.apply", "apply"),
    "validate": ("reconciler.cli.validate", "validate"),
    "next": ("reconciler.cli.next", "next_"),
    "tasks": ("reconciler.cli.tasks", "tasks"),
    "schema": ("reconciler.cli.schema", "schema"),
    "import": ("reconciler.cli.importer", "import_"),
    "watch": ("reconciler.cli.watch", "watch"),
    "status": ("reconciler.cli.status", "status"),
    "db": ("reconciler.cli.db", "db"),
    "trigger": ("reconciler.cli.trigger", "trigger"),
    "history": ("reconciler.cli.history", "history"),
    "serve": ("reconciler.cli.serve", "serve"),
    "up": ("reconciler.cli.up", "up"),
    "doctor": ("reconciler.cli.doctor", "doctor"),
    "alerts": ("reconciler.cli.alerts", "alerts"),
}


class ReconcileGroup(click.Group):
    """Loads commands lazily and routes a bare ``reconcile [OPTIONS]`` to ``apply``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version")):
            args = ["apply", *args]
        return super().parse_args(ctx, args)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="celery-reconciler")
def main() -> None:
    """Celery schedules as code: validate, plan and apply tasks.d/ to the database."""


def run(*args: Any) -> None:  # pragma: no cover - convenience for ``python -m``
    main(*args)
