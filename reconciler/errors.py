"""The project's exceptions: each carries a message for people and a CLI exit code.

Library code raises these (wrapping third-party exceptions at the boundary); the CLI
prints the message and exits with the code, so no traceback reaches a user.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Something the user can fix; the message says what and how."""

    exit_code = 1


class UsageError(ReconcilerError):
    """The command line itself is wrong."""

    exit_code = 2


class ConfigError(ReconcilerError):
    """A setting (URL, app path, tokens file) is wrong or points at nothing."""


class DatabaseUnavailable(ReconcilerError):
    """The database cannot be reached or is not migrated."""


class StateRefused(ReconcilerError):
    """The database refused to store the desired state (a value it does not take);
    applying the same files again cannot succeed. ``reason`` is the database's word."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class LockTimeout(ReconcilerError):
    """Another reconciler held the apply lock for longer than ``--lock-timeout``."""


class StoredSpecUnreadable(ReconcilerError):
    """A task's stored definition does not pass this version's checks (an older version
    applied it); applying the task files again replaces it."""


class UnknownTask(ReconcilerError):
    """No task (or no live task) of that name."""
