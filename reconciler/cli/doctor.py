"""``reconcile doctor``: print each check of ``reconciler.ops.doctor`` with its mark and fix.

Exit 0 when nothing failed (warnings are shown, not failed), 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import sys

import click

from reconciler.cli.options import (
    beats_expected_option,
    echo_json,
    format_option,
    handle_errors,
    settings_options,
)
from reconciler.ops.doctor import MARKS, Check, healthy, run_checks
from reconciler.settings import Settings

WIDTH = 11


def show(check: Check, colour: bool) -> None:
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
@format_option("text", "json")
@handle_errors
def doctor(
    settings: Settings,
    timeout: float,
    beats_expected: int | None,
    pending_after: float,
    output_format: str,
) -> None:
    """Check the database, broker, workers, beats, watch loops and tasks; say how to fix each."""
    waited = dt.timedelta(seconds=pending_after)
    if output_format == "json":
        checks = run_checks(
            settings, timeout=timeout, beats_expected=beats_expected, pending_after=waited
        )
        echo_json({"ok": healthy(checks), "checks": [check.to_dict() for check in checks]})
    else:
        colour = sys.stdout.isatty()
        checks = run_checks(
            settings,
            timeout=timeout,
            beats_expected=beats_expected,
            pending_after=waited,
            on_check=lambda c: show(c, colour),
        )
        failed = sum(check.status == "fail" for check in checks)
        warned = sum(check.status == "warn" for check in checks)
        click.echo("")
        click.echo(
            f"{failed} check(s) failed, {warned} warning(s)" if failed or warned
            else "All checks passed."
        )  # fmt: skip
    sys.exit(0 if healthy(checks) else 1)
