"""Where each owner's alerts go (``notify_targets``): written by apply from the defaults
document, read by whatever sends alerts (docs/task-files.md, "The defaults document").

A target is ``{"webhook_url_env": NAME, "format": "json" | "slack"}``: the name of the
environment variable holding the webhook URL, never the URL itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from reconciler.core.plan import NotifyChange
from reconciler.store.tables import NotifyTarget

Targets = dict[str, dict[str, Any]]
"""Owner -> ``{"webhook_url_env": NAME, "format": "json" | "slack"}``."""


def read_targets(session: Session) -> Targets:
    """Every owner's notify target as the last apply wrote it."""
    query = select(NotifyTarget.owner, NotifyTarget.webhook_url_env, NotifyTarget.format)
    return {
        owner: {"webhook_url_env": variable, "format": kind}
        for owner, variable, kind in session.execute(query)
    }


def write_changes(session: Session, changes: tuple[NotifyChange, ...], now: dt.datetime) -> None:
    """Apply the plan's notify changes in the caller's transaction."""
    for change in changes:
        if change.new is None:
            session.execute(delete(NotifyTarget).where(NotifyTarget.owner == change.owner))
            continue
        values = _columns(change.new) | {"updated_at": now}
        if change.old is None:
            session.execute(insert(NotifyTarget).values(owner=change.owner, **values))
        else:
            session.execute(
                update(NotifyTarget).where(NotifyTarget.owner == change.owner).values(**values)
            )


def _columns(target: Mapping[str, Any]) -> dict[str, Any]:
    return {"webhook_url_env": target["webhook_url_env"], "format": target["format"]}
