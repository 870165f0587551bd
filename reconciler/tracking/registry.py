"""The trackers installed in this process and what the process is: where the signal
handlers and the claim hook find the tracker of a task's app."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.tracking.tracker import Tracker

trackers: list[Tracker] = []


def for_task(sender: Any) -> Tracker | None:
    """The tracker of the app ``sender`` (a task) belongs to, if that app is tracked."""
    app = getattr(sender, "app", None)
    for tracker in trackers:
        if tracker.app is app:
            return tracker
    return None


@dataclass
class Process:
    in_beat: bool = False  # beat's own publishes have their rows already
    connected: bool = False  # the signal handlers are connected


process = Process()


def _after_fork_in_child() -> None:
    for tracker in trackers:
        tracker.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
