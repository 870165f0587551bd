"""Doctor's ``old-beat`` check: after a cut-over, does the scheduler the tasks were
imported from still look alive? (docs/import.md, "Cutting over")

Given ``--old-scheduler URL`` it reads that scheduler's store: RedBeat's lock key, and each
imported task's last run there (a run after the task was created here means both fired
it), plus django-celery-beat's ``last_update`` (its tasks edited after the import). Without
a URL it only says which imported tasks it could check.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from reconciler.errors import ReconcilerError
from reconciler.ops.checkbase import Check, Context, listed, masked

if TYPE_CHECKING:
    from reconciler.store.importsources import ImportedRow, OldActivity

CHECKABLE = ("django-celery-beat", "redbeat")
"""The sources whose store shows whether their scheduler still runs."""

FIX = (
    'stop the old celery beat (docs/import.md, "Cutting over"); once it is stopped, '
    "disable or delete there the tasks imported here"
)


def source_of(url: str) -> str:
    """The kind of store ``url`` names: a Redis URL is RedBeat's, any other a database."""
    scheme = urlsplit(url).scheme.lower()
    return "redbeat" if scheme in ("redis", "rediss", "unix") else "django-celery-beat"


def check_old_scheduler(ctx: Context) -> Check | None:
    """None (no line) when no URL is given and no task came from a checkable source."""
    url = ctx.old_scheduler
    if ctx.database is None:
        return None if url is None else skipped("the database is not usable")
    from reconciler.store import importsources

    with ctx.database.session() as session:
        imported = importsources.imported_rows(session)
    if url is None:
        kinds = sorted({row.source for row in imported if row.source in CHECKABLE})
        if not kinds:
            return None
        count = sum(row.source in CHECKABLE for row in imported)
        return skipped(
            f"{count} task(s) were imported from {' and '.join(kinds)}; pass --old-scheduler "
            f"URL to check that the old scheduler is stopped"
        )
    kind = source_of(url)
    try:
        if kind == "redbeat":
            activity = importsources.redbeat_activity(url, ctx.key_prefix)
        else:
            activity = importsources.django_celery_beat_activity(url)
    except ReconcilerError as exc:
        return Check(
            "old-beat", "warn", f"{masked(url)}: {exc}" if kind == "redbeat" else str(exc),
            "check --old-scheduler (and --key-prefix for RedBeat)",
        )  # fmt: skip
    mine = [row for row in imported if row.source == kind]
    details = signs(activity, mine, kind)
    if details:
        return Check(
            "old-beat", "warn", f"the {kind} scheduler at {masked(url)} still looks alive",
            FIX, listed(details),
        )  # fmt: skip
    lock = ", and its lock is free" if kind == "redbeat" else ""
    return Check(
        "old-beat", "ok", f"{kind} at {masked(url)}: none of the {len(mine)} task(s) imported "
        f"from it ran there after the import{lock}",
    )  # fmt: skip


def signs(activity: OldActivity, mine: list[ImportedRow], kind: str) -> list[str]:
    """What says the old scheduler runs: RedBeat's lock held; an imported task that ran
    there after its row was created here; its tasks edited after the import while some
    imported ones are still enabled there."""
    found = []
    if activity.lock_seconds is not None:
        seconds = activity.lock_seconds
        left = "no expiry" if seconds < 0 else f"expires in {seconds:.0f} s"
        found.append(f"RedBeat's lock {activity.lock} is held ({left}): its beat runs")
    enabled = []
    for row in mine:
        old = activity.runs.get(row.old_name)
        if old is None or not old.enabled:
            continue
        enabled.append(row)
        if old.last_run_at is not None and old.last_run_at > row.created_at:
            found.append(
                f"{row.name}: {kind} ran {row.old_name!r} at {_iso(old.last_run_at)}, after "
                f"it was created here at {_iso(row.created_at)}"
            )
    first = min((row.created_at for row in mine), default=None)
    changed = activity.changed_at
    if changed is not None and first is not None and changed > first and enabled:
        found.append(
            f"its tasks were edited at {_iso(changed)}, after the import was applied "
            f"({_iso(first)}), and {len(enabled)} of the imported ones are still enabled there"
        )
    return found


def skipped(why: str) -> Check:
    return Check("old-beat", "skip", f"not checked: {why}")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
