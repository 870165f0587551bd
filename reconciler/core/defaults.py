"""The ``kind: defaults`` document: values for every task of the tree, at most one per tree
(docs/task-files.md, "The defaults document")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from reconciler.core.alerts import Alerts, NotifyTarget, check_notify_owners
from reconciler.core.retention import History
from reconciler.core.timing import Spread
from reconciler.core.values import FileModel

DEFAULTS_KIND = "defaults"


class Defaults(FileModel):
    """``alerts`` and ``history`` for the tasks that have none of their own, and where alerts
    go per owner."""

    kind: Literal["defaults"]
    alerts: Alerts | None = None
    history: History | None = None
    spread: Spread | None = None
    notify: Annotated[dict[str, NotifyTarget], AfterValidator(check_notify_owners)] = Field(
        default_factory=dict
    )
