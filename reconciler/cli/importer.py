"""``reconcile import SOURCE``: another scheduler's tasks as task files (docs/import.md).

Parses options, reads the source (the old web API's JSON file, Celery's
``beat_schedule``, django-celery-beat's tables or RedBeat's keys), calls
``reconciler.files.imports.plan`` and says what it wrote, which names it changed, which
one-offs it held back, and what to run next.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import echo_json, format_option, handle_errors, tasks_dir_option
from reconciler.core.redact import redact_url_credentials
from reconciler.errors import ConfigError, ReconcilerError, UsageError
from reconciler.files.imports import SOURCES
from reconciler.settings import Settings
from reconciler.vocabulary import REDBEAT_PREFIX

if TYPE_CHECKING:  # the readers (pydantic, SQLAlchemy, Redis, Celery) load when it runs
    from reconciler.files.imports.plan import ImportedTask


@click.command("import")
@click.argument("source")
@click.option(
    "--from",
    "kind",
    type=click.Choice(list(SOURCES)),
    default="web-api",
    show_default=True,
    help="What SOURCE is: web-api FILE.json, beat-schedule MODULE:ATTR (a Celery app), "
    "django-celery-beat DATABASE_URL, redbeat REDIS_URL.",
)
@click.option(
    "--owner",
    default=None,
    metavar="NAME",
    help="Owner of the imported tasks (who may read their history); needed unless every "
    "payload has an 'owner'.",
)
@click.option(
    "--names",
    "names_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="YAML mapping of old names to task names, used instead of the names made up.",
)
@click.option(
    "--enable-one-offs",
    is_flag=True,
    help="Keep one-offs that may already have run (async, or scheduled in the past) enabled.",
)
@click.option(
    "--drop-unsupported",
    is_flag=True,
    help="Drop fields task files cannot hold (each is still listed) instead of refusing.",
)
@click.option(
    "--key-prefix",
    default=REDBEAT_PREFIX,
    show_default=True,
    metavar="PREFIX",
    help="RedBeat's key prefix (redbeat_key_prefix).",
)
@click.option(
    "--timezone",
    "zone",
    default="UTC",
    show_default=True,
    metavar="ZONE",
    help="Time zone of crontabs whose source keeps none (RedBeat: the app's timezone).",
)
@click.option(
    "--last-run-from",
    "last_run_from",
    default=None,
    metavar="TIME",
    help="The last run of periodic tasks whose source keeps none: an ISO 8601 time (no "
    "offset means UTC) or 'now'; their first run is the slot after it.",
)
@tasks_dir_option("; files go to its imported/ folder.")
@format_option("text", "json")
@handle_errors
def import_(
    source: str,
    kind: str,
    owner: str | None,
    names_file: Path | None,
    enable_one_offs: bool,
    drop_unsupported: bool,
    key_prefix: str,
    zone: str,
    last_run_from: str | None,
    tasks_dir: str | None,
    output_format: str,
) -> None:
    """Turn another scheduler's tasks into YAML task files, all or nothing.

    SOURCE is a JSON file of the old web API's payloads (the default, --from web-api), a
    Celery app MODULE:ATTR whose beat_schedule is read, a django-celery-beat database URL,
    or a RedBeat Redis URL. Every entry is checked before anything is written; an
    existing file is never overwritten.
    """
    from reconciler.core.zones import iana_zones, zone_hint
    from reconciler.files.imports.plan import ImportOptions, plan_import, write_tasks
    from reconciler.files.imports.source import read_names
    from reconciler.store.importsources import redbeat_lock, watch_loops_applying

    settings = Settings.resolve(tasks_dir=tasks_dir)
    directory = settings.tasks_dir
    options = ImportOptions(
        kind=kind,
        names=read_names(names_file) if names_file is not None else None,
        enable_one_offs=enable_one_offs,
        drop_unsupported=drop_unsupported,
        default_zone=zone,
        last_run_from=_last_run_from(last_run_from),
    )
    if zone not in iana_zones():
        raise UsageError(f"--timezone: unknown time zone {zone!r} ({zone_hint(zone)})")
    if kind != "web-api" and not (owner and owner.strip()):
        raise UsageError(
            f"{redact_url_credentials(source)}: {SOURCES[kind]} keeps no owner: pass --owner "
            f"NAME, the team that may read the tasks' history"
        )
    payloads, shown = read_source(kind, source, key_prefix)
    if kind == "redbeat" and redbeat_lock(source, key_prefix) is not None:
        click.echo(
            f"note: RedBeat's lock {key_prefix}:lock is held, so its beat still runs: stop it "
            f"first, or what it sends from now on runs again here (docs/import.md)",
            err=True,
        )
    imported = plan_import(
        payloads,
        tasks_dir=directory,
        owner=owner.strip() if owner else None,
        source=shown,
        options=options,
    )
    loops = watch_loops_applying(settings.database_url, directory) if imported else []
    if loops:
        click.echo(
            f"note: the watch loop {', '.join(loops)} applies {directory}: the files apply as "
            f"soon as they are written (one-offs that may have run are written disabled)",
            err=True,
        )
    write_tasks(imported)
    if imported:
        _write_schema(imported[0].path.parent)
    if output_format == "json":
        echo_json({"imported": [_as_json(task) for task in imported]})
        return
    if not imported:
        what = "payloads" if kind == "web-api" else "tasks"
        click.echo(f"{shown} holds no {what}; nothing to import")
        return
    for task in imported:
        click.echo(f"+ {task.spec.name} ({task.spec.type}) -> {task.path}")
        for note in task.notes:
            click.echo(f"    note: {note}")
    held = [task.spec.name for task in imported if task.held]
    if held:
        click.echo(
            f"Written disabled, as they may already have run: {', '.join(held)} "
            f"(set enabled: true in a file to run that one-off)."
        )
    count = len(imported)
    click.echo(
        f"Imported {count} task{'' if count == 1 else 's'}. Check them with "
        f"`reconcile validate`, then commit them."
    )


def _last_run_from(text: str | None) -> dt.datetime | None:
    """``--last-run-from``: ``now`` or an ISO 8601 time (UTC without an offset), not later
    than now."""
    if text is None:
        return None
    now = dt.datetime.now(dt.UTC)
    if text.strip().lower() == "now":
        return now
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--last-run-from: {text!r} is not an ISO 8601 time or 'now' "
            f"(write it like 2026-03-04T10:00:00Z)"
        ) from None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    if moment > now:
        raise UsageError(f"--last-run-from: {text} is in the future; give when it last ran")
    return moment


def read_source(kind: str, source: str, key_prefix: str) -> tuple[list[Any], str]:
    """The source's entries, and how messages name the source."""
    from reconciler.celeryapp import beat_schedule_entries, load_app
    from reconciler.files.imports.source import read_payloads
    from reconciler.store.importsources import read_django_celery_beat, read_redbeat

    if kind == "web-api":
        return read_payloads(Path(source)), source
    if kind == "beat-schedule":
        if ":" not in source and "." not in source and Path(source).suffix:
            raise UsageError(f"{source}: --from beat-schedule takes a Celery app MODULE:ATTR")
        try:
            app = load_app(source)
        except ReconcilerError:
            raise
        except Exception as exc:  # the user's module raised while it was imported
            raise ConfigError(
                f"--app {source}: importing it failed: {type(exc).__name__}: {exc}"
            ) from exc
        return beat_schedule_entries(app), f"{source} beat_schedule"
    shown = redact_url_credentials(source)
    if kind == "django-celery-beat":
        return read_django_celery_beat(source), shown
    return read_redbeat(source, key_prefix), shown


def _write_schema(file_dir: Path) -> None:
    """The schema the written files' first line points at, written when missing or stale."""
    from reconciler.files.imports.render import schema_file, write_schema

    try:
        written = write_schema(file_dir)
    except OSError as exc:
        click.echo(
            f"note: cannot write {schema_file(file_dir)} ({exc.strerror or exc}), the schema the "
            f"files' first line names: write it with `reconcile schema > PATH`",
            err=True,
        )
        return
    if written is not None:
        click.echo(
            f"note: wrote {os.path.relpath(written)}, the schema the files' first line names "
            f"(editors check the fields with it)",
            err=True,
        )


def _as_json(task: ImportedTask) -> dict[str, object]:
    return {
        "payload": task.index,
        "source": task.where or f"payload[{task.index}]",
        "name": task.spec.name,
        "original_name": task.original_name,
        "type": task.spec.type,
        "enabled": task.spec.enabled,
        "held": task.held,
        "last_run_at": task.last_run_at.isoformat() if task.last_run_at else None,
        "path": str(task.path),
        "notes": list(task.notes),
    }
