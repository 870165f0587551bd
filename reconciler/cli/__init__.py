"""The ``reconcile`` command line: a thin click layer over the library.

Each command lives in its own module here and is imported only when it runs, so
``reconcile validate`` never pays for SQLAlchemy or Celery. ``reconcile`` with no
command (or with only options) means ``reconcile apply``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, the one line ``reconcile --help`` shows: its short help)
    "apply": (
        "reconciler.cli.apply",
        "apply",
        "Validate the task files, plan, and apply the plan in one transaction.",
    ),
    "validate": (
        "reconciler.cli.validate",
        "validate",
        "Check task files (default: the tasks directory) without touching the database.",
    ),
    "next": (
        "reconciler.cli.next",
        "next_",
        "Show the next fire times of task NAME (or of --cron / --interval), in its time zone.",
    ),
    "tasks": (
        "reconciler.cli.tasks",
        "tasks",
        "List the Celery task names the app registers (without Celery's own celery.*).",
    ),
    "schema": (
        "reconciler.cli.schema",
        "schema",
        "Print the JSON Schema of a task file, of the defaults document or of a calendar.",
    ),
    "import": (
        "reconciler.cli.importer",
        "import_",
        "Turn another scheduler's tasks into YAML task files, all or nothing.",
    ),
    "watch": (
        "reconciler.cli.watch",
        "watch",
        "Apply now, then on every change of the task files and every resync interval.",
    ),
    "status": (
        "reconciler.cli.status",
        "status",
        "Show the tasks (or the one named) with their latest execution and next run.",
    ),
    "db": ("reconciler.cli.db", "db", "The database schema: upgrade it, or show its revision."),
    "trigger": (
        "reconciler.cli.trigger",
        "trigger",
        "Run task NAME now, outside its schedule; the execution is recorded as manual.",
    ),
    "history": (
        "reconciler.cli.history",
        "history",
        "Show the executions of task NAME, newest first (deleted tasks included).",
    ),
    "serve": (
        "reconciler.cli.serve",
        "serve",
        "Serve the task list, execution history, apply log and /metrics, read-only.",
    ),
    "up": (
        "reconciler.cli.up",
        "up",
        "Run the watch loop, Beat, a worker and the HTTP endpoint until Ctrl-C or SIGTERM.",
    ),
    "doctor": (
        "reconciler.cli.doctor",
        "doctor",
        "Check the database, broker, workers, beats, watch loops and tasks; say how to fix each.",
    ),
    "prune": (
        "reconciler.cli.prune",
        "prune",
        "Remove executions past their retention now (Beat also does it on its own).",
    ),
    "alerts": (
        "reconciler.cli.alerts",
        "alerts",
        "Write the alerting rules of every task's alerts (its own, else the defaults').",
    ),
}
DEFAULT_COMMAND = "apply"


class ReconcileGroup(click.Group):
    """Loads commands lazily and routes a bare ``reconcile [OPTIONS]`` to ``apply``.

    Its help lists the commands from ``COMMANDS`` without importing them, and the
    options of ``apply``, whose module imports the database layer only when it runs.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version")):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        click.Command.format_options(self, ctx, formatter)
        command = self.get_command(ctx, DEFAULT_COMMAND)
        assert command is not None
        sub = click.Context(command, info_name=DEFAULT_COMMAND, parent=ctx)
        rows = [
            record
            for param in command.get_params(sub)
            if "--help" not in param.opts and (record := param.get_help_record(sub)) is not None
        ]
        with formatter.section(f"Options of {DEFAULT_COMMAND} (also reconcile without a command)"):
            formatter.write_dl(rows)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(
    cls=ReconcileGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(package_name="celery-reconciler")
def main() -> None:
    """Celery schedules as code: validate, plan and apply tasks.d/ to the database.

    Without a command, reconcile is reconcile apply: 'reconcile --dry-run' prints the
    plan and writes nothing.
    """


def run(*args: Any) -> None:  # pragma: no cover - convenience for ``python -m``
    main(*args)
