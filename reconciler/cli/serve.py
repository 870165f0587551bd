"""``reconcile serve``: the read-only history endpoint and page on uvicorn.

What it serves: docs/http-api.md; its defences: docs/security.md.
"""

from __future__ import annotations

import click

from reconciler.cli.options import handle_errors, settings_options
from reconciler.settings import Settings, resolve_beats_expected


@click.command()
@settings_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of hashed access tokens [env RECONCILER_TOKENS_FILE].",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback address without a tokens file (everyone sees everything).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests addressed to NAME (a proxy's name; *.example.com; * for "
    "any), besides loopback names; repeatable [env RECONCILER_ALLOWED_HOSTS, comma-separated].",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0, 3600, min_open=True, max_open=True),
    default=None,
    help="Seconds for a request's headers to arrive before the connection is closed "
    "[env RECONCILER_HEADER_TIMEOUT; default 10].",
)
@click.option(
    "--keep-alive-timeout",
    "keep_alive",
    type=click.IntRange(1, 3600),
    default=5,
    show_default=True,
    help="Seconds an idle connection stays open after a response.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes; more than 1 uses more cores (each has its own database pool).",
)
@handle_errors
def serve(
    settings: Settings,
    host: str,
    port: int,
    tokens_file: str | None,
    insecure: bool,
    allowed_hosts: tuple[str, ...],
    header_timeout: float | None,
    keep_alive: int,
    access_log: bool,
    workers: int,
) -> None:
    """Serve the task list, execution history, apply log and /metrics, read-only."""
    from reconciler.web.server import run

    resolve_beats_expected()  # a bad RECONCILER_BEATS_EXPECTED is refused before serving

    run(
        settings,
        host=host,
        port=port,
        tokens_file=tokens_file,
        insecure=insecure,
        access_log=access_log,
        workers=workers,
        allowed_hosts=allowed_hosts,
        header_timeout=header_timeout,
        keep_alive=keep_alive,
    )
