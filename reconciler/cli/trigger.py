"""``reconcile trigger NAME [--args JSON] [--kwargs JSON] [--force]``: run a task now, as manual.

Parses the options and calls ``reconciler.beat.manual.trigger``, which writes the
``manual`` execution row and sends it through the configured Celery app and broker.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, settings_options
from reconciler.errors import ReconcilerError, UsageError
from reconciler.settings import DEFAULT_BROKER_URL, Settings
from reconciler.vocabulary import Trigger

if TYPE_CHECKING:  # Celery and the database load when it runs, not for --help
    from reconciler.store.database import Database


def _json_option(flag: str, text: str | None, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(value, kind):
        expected = (
            "a JSON list, e.g. '[1, \"a\"]'" if kind is list else "a JSON object, e.g. '{\"k\": 1}'"
        )
        raise UsageError(f"{flag}: expected {expected}, got {type(value).__name__}")
    return value


def _is_disabled(database: Database, name: str) -> bool:
    """True for a live task whose spec says ``enabled: false`` (unknown names are left to
    the trigger itself, which explains them); StoredSpecUnreadable for a definition this
    version cannot read, which beat does not fire either."""
    from reconciler.core.spec import stored_spec
    from reconciler.store import scheduling

    with scheduling.transaction(database) as session:
        row = scheduling.find_task(session, name)
    return row is not None and not row.deleted and not stored_spec(name, row.spec).enabled


@click.command("trigger")
@settings_options
@click.argument("name")
@click.option(
    "--args", "args_json", default=None, help="Arguments as a JSON list (replace the task's)."
)
@click.option(
    "--kwargs",
    "kwargs_json",
    default=None,
    help="Keyword arguments as a JSON object (replace the task's).",
)
@click.option("--force", is_flag=True, help="Run the task even if it is disabled (enabled: false).")
@format_option("text", "json")
@handle_errors
def trigger(
    settings: Settings,
    name: str,
    args_json: str | None,
    kwargs_json: str | None,
    force: bool,
    output_format: str,
) -> None:
    """Run task NAME now, outside its schedule; the execution is recorded as manual.

    A disabled task is refused unless --force is given."""
    from reconciler.beat.manual import trigger as send_now
    from reconciler.celeryapp import load_app
    from reconciler.store.database import Database

    args = _json_option("--args", args_json, list)
    kwargs = _json_option("--kwargs", kwargs_json, dict)
    app = load_app(settings.app)
    # An explicit broker (flag or environment) wins over the app's own configuration.
    if settings.broker_url != DEFAULT_BROKER_URL or not app.conf.broker_url:
        app.conf.broker_url = settings.broker_url
    database = Database.open(settings.database_url)
    try:
        disabled = _is_disabled(database, name)
        if disabled and not force:
            raise ReconcilerError(
                f"task {name!r} is disabled (enabled: false in its task file), so it was not "
                f"run; pass --force to run it once anyway (recorded as a manual run)"
            )
        sent = send_now(database, app, name, args=args, kwargs=kwargs)
    finally:
        database.dispose()
    if output_format == "json":
        echo_json(
            {
                "task": sent.name,
                "celery_task_id": sent.celery_task_id,
                "trigger": Trigger.MANUAL,
                "queued_at": sent.queued_at.isoformat(),
            }
        )
        return
    forced = " (disabled; run because of --force)" if disabled else ""
    click.echo(f"Triggered {sent.name}{forced}: celery task id {sent.celery_task_id}")
