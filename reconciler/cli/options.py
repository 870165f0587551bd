"""Options shared by the commands: settings, output format, and error-to-exit-code mapping."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler.errors import ReconcilerError
from reconciler.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def tasks_dir_option(more_help: str = "") -> Callable[[F], F]:
    """--tasks-dir, passed as ``tasks_dir`` (None: the environment's or the default)."""
    return click.option(
        "--tasks-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Task files directory [env RECONCILER_TASKS_DIR; default ./tasks.d]" + more_help,
    )


SETTINGS = ("tasks_dir", "database_url", "broker_url", "app")


def settings_of(*used: str) -> Callable[[F], F]:
    """Adds the options of the settings a command uses (of ``SETTINGS``) and passes
    ``settings``, the others at their environment's or default value: a command's help
    lists only what changes what it does."""
    unknown = set(used) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    options: dict[str, Callable[[F], F]] = {
        "tasks_dir": tasks_dir_option(),
        "database_url": click.option(
            "--database-url",
            default=None,
            help="SQLAlchemy URL [env RECONCILER_DATABASE_URL; default embedded SQLite]",
        ),
        "broker_url": click.option(
            "--broker-url",
            default=None,
            help="Celery broker URL [env RECONCILER_BROKER_URL; default embedded SQLite]",
        ),
        "app": click.option(
            "--app",
            "app_path",
            default=None,
            help="Celery app as module:attr [env RECONCILER_APP; default the demo app]",
        ),
    }

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(
            *args: Any,
            tasks_dir: str | None = None,
            database_url: str | None = None,
            broker_url: str | None = None,
            app_path: str | None = None,
            **kwargs: Any,
        ) -> Any:
            settings = Settings.resolve(tasks_dir, database_url, broker_url, app_path)
            return function(*args, settings=settings, **kwargs)

        decorated: Any = wrapper
        for name in reversed([name for name in SETTINGS if name in used]):
            decorated = options[name](decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


settings_options = settings_of(*SETTINGS)
"""All four settings: --tasks-dir, --database-url, --broker-url, --app."""


def format_option(*choices: str, default: str = "text") -> Callable[[F], F]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


lock_timeout_option = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for another reconciler's apply lock.",
)

allow_mass_delete_option = click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Apply even if more than half (or all) of the tasks would be deleted.",
)

beats_expected_option = click.option(
    "--beats-expected",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="How many beats should be alive (default: RECONCILER_BEATS_EXPECTED, else not checked).",
)


def handle_errors(function: F) -> F:
    """Map the project's errors to a message on stderr and their exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ReconcilerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
