"""``reconcile doctor``: print each check of ``reconciler.ops.doctor`` with its mark and fix.

Exit 0 when nothing failed (warnings are shown, not failed), 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from typing import TYPE_CHECKING

import click

from reconciler.cli.options import (
    beats_expected_option,
    echo_json,
    format_option,
    handle_errors,
    settings_options,
)
from reconciler.settings import Settings
from reconciler.vocabulary import REDBEAT_PREFIX

if TYPE_CHECKING:  # the checks (and their libraries) load when it runs, not for --help
    from reconciler.ops.doctor import Check

WIDTH = 11


def show(check: Check, colour: bool) -> None:
    from reconciler.ops.doctor import MARKS

    colours = {"ok": "green", "warn": "yellow", "fail": "red", "skip": None}
    mark = MARKS[check.status]
    if colour and colours[check.status]:
        mark = click.style(mark, fg=colours[check.status], bold=True)
    click.echo(f"{mark} {check.name:<{WIDTH}} {check.message}")
    for detail in check.details:
        click.echo(f"  {'':<{WIDTH}} - {detail}")
    if check.fix and check.status in ("fail", "warn"):
        click.echo(f"  {'':<{WIDTH}} fix: {check.fix}")


@click.command("doctor")
@settings_options
@click.option("--timeout", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds to wait for the broker and for workers to answer.")  # fmt: skip
@beats_expected_option
@click.option("--pending-after", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds an execution may wait as pending before 'queues' fails.")  # fmt: skip
@click.option("--old-scheduler", default=None, metavar="URL",
              help="The scheduler tasks were imported from (a django-celery-beat database "
              "URL, or RedBeat's Redis URL): warn while it still looks alive.")  # fmt: skip
@click.option("--key-prefix", default=REDBEAT_PREFIX, show_default=True, metavar="PREFIX",
              help="RedBeat's key prefix, with --old-scheduler redis://...")  # fmt: skip
@format_option("text", "json")
@handle_errors
def doctor(
    settings: Settings,
    timeout: float,
    beats_expected: int | None,
    pending_after: float,
    old_scheduler: str | None,
    key_prefix: str,
    output_format: str,
) -> None:
    """Check the database, broker, workers, beats, watch loops and tasks; say how to fix each."""
    from reconciler.ops.doctor import healthy, run_checks

    waited = dt.timedelta(seconds=pending_after)
    check = functools.partial(
        run_checks,
        settings,
        timeout=timeout,
        beats_expected=beats_expected,
        pending_after=waited,
        old_scheduler=old_scheduler,
        key_prefix=key_prefix,
    )
    if output_format == "json":
        checks = check()
        echo_json({"ok": healthy(checks), "checks": [check.to_dict() for check in checks]})
    else:
        colour = sys.stdout.isatty()
        checks = check(on_check=lambda c: show(c, colour))
        failed = sum(check.status == "fail" for check in checks)
        warned = sum(check.status == "warn" for check in checks)
        click.echo("")
        click.echo(
            f"{failed} check(s) failed, {warned} warning(s)" if failed or warned
            else "All checks passed."
        )  # fmt: skip
    sys.exit(0 if healthy(checks) else 1)
