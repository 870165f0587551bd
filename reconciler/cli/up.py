"""``reconcile up``: everything for one machine (watch, Beat, a worker, the HTTP endpoint).

Parses options, refuses a port in use or an unwritable embedded state before starting
anything, brings the database schema up to date once (so the children do not race to
migrate it), and hands over to ``reconciler.ops.up.Supervisor``.
"""

from __future__ import annotations

import sys

import click

from reconciler.cli.options import handle_errors, settings_options
from reconciler.errors import ConfigError
from reconciler.settings import Settings


@click.command("up")
@settings_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address of the HTTP endpoint.")  # fmt: skip
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the HTTP endpoint (0: any free port).")  # fmt: skip
@click.option("--concurrency", "-c", default=2, show_default=True, type=click.IntRange(1),
              help="Worker processes.")  # fmt: skip
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Run the HTTP endpoint.")  # fmt: skip
@click.option("--resync-interval", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds between the watch loop's full resyncs.")  # fmt: skip
@click.option("--git-pull", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Pull the tasks checkout (fast-forward only) every SECONDS.")  # fmt: skip
@click.option("--loglevel", "-l", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level of Beat and the worker.")  # fmt: skip
@handle_errors
def up(
    settings: Settings,
    host: str,
    port: int,
    concurrency: int,
    serve: bool,
    resync_interval: float,
    git_pull: float | None,
    loglevel: str,
) -> None:
    """Run the watch loop, Beat, a worker and the HTTP endpoint until Ctrl-C or SIGTERM."""
    # Imported here: ``reconcile up --help`` lists the options without the database layer.
    from reconciler.ops.doctor import masked
    from reconciler.ops.up import (
        Supervisor,
        UpOptions,
        child_env,
        plan_children,
        port_taken,
        sqlite_files,
        unwritable_state,
    )
    from reconciler.store.database import Database

    if serve and port_taken(host, port):
        raise ConfigError(
            f"port {port} on {host} is already in use (another 'reconcile up' or 'serve'?): "
            f"stop it, or pass --port with a free port (0: any)"
        )
    state = unwritable_state(sqlite_files(settings))
    if state is not None:
        raise ConfigError(
            f"the embedded state {state}: free space or make it writable, or point "
            f"--database-url and --broker-url elsewhere"
        )
    Database.open(settings.database_url).dispose()
    options = UpOptions(
        host=host,
        port=port,
        concurrency=concurrency,
        serve=serve,
        resync_interval=resync_interval,
        loglevel=loglevel.upper(),
        watch_args=("--git-pull", str(git_pull)) if git_pull else (),
    )
    notes = [
        f"tasks from {settings.tasks_dir}/, state in {masked(settings.database_url)}",
        "history: 'reconcile history NAME'; health: 'reconcile doctor'; stop: Ctrl-C",
    ]
    if serve:
        shown = "any free port (see serve's log)" if port == 0 else f"http://{host}:{port}/"
        notes.insert(1, f"the page and API: {shown}")
    supervisor = Supervisor(
        plan_children(settings, options),
        child_env(settings),
        notes=notes,
        state_files=sqlite_files(settings),
    )
    sys.exit(supervisor.run())
