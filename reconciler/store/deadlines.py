"""How long each kind of process waits for the database: one place for every figure.

A database that stops answering must look like one that refuses (docs/deadlines.md):
each role's sessions get a connect timeout, TCP keepalives and a TCP user timeout on
the client, ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` on the server (so a stalled client's locks are
released), a client-side read deadline for every round trip (``reconciler.store.stall``),
and on SQLite a bounded busy timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

READ_MARGIN = 1.0
"""Seconds the client waits past ``statement_timeout``, so the server's own error (a
clear "canceling statement due to statement timeout") normally arrives first."""


@dataclass(frozen=True)
class Deadlines:
    """The figures of one role, in seconds."""

    role: str
    connect: int  # libpq's connect_timeout takes whole seconds (at least 2)
    statement: float
    lock: float
    idle_in_transaction: float
    busy: float  # SQLite: how long a statement waits for another connection's lock
    keepalive_idle: int = 5
    keepalive_interval: int = 2
    keepalive_count: int = 3

    @property
    def read(self) -> float:
        """The client's deadline for one round trip with the server."""
        return self.statement + READ_MARGIN

    @property
    def tcp_user_timeout(self) -> int:
        """Milliseconds sent data may stay unacknowledged before the kernel drops the
        connection (a partition while a request is in flight)."""
        return int(self.read * 1000)

    def server_settings(self) -> dict[str, str]:
        """The session settings PostgreSQL applies to this role's connections."""
        return {
            "statement_timeout": _ms(self.statement),
            "lock_timeout": _ms(self.lock),
            "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction),
        }


def _ms(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms"


# Beat claims in short transactions (milliseconds) and ticks four times a second: a beat
# stalled mid-claim loses its session, and its row locks, after 3 s idle in transaction,
# and the other beat fires those slots on its next tick.
BEAT = Deadlines("beat", connect=2, statement=3, lock=2, idle_in_transaction=3, busy=5)
# Beat's pruner, on its own connections: a day's roll-up of the statistics is one statement
# over that day's executions (minutes at millions a day); its deletes are short and never
# wait on a lock for long.
PRUNE = Deadlines("prune", connect=2, statement=600, lock=2, idle_in_transaction=60, busy=5)
# Watch applies in batches of 1,000 rows (each statement well under a second at 100,000
# tasks); its apply lock waits --lock-timeout, set per transaction (store.tasks.lock).
WATCH = Deadlines("watch", connect=3, statement=10, lock=10, idle_in_transaction=30, busy=30)
# One-shot commands (apply, status, history, trigger...): someone waits at a terminal.
COMMAND = Deadlines("command", connect=5, statement=30, lock=30, idle_in_transaction=60, busy=30)
# The worker's tracking thread writes small batches; it retries what fails.
TRACKING = Deadlines("tracking", connect=3, statement=10, lock=5, idle_in_transaction=10, busy=10)
# The endpoint: a request should be answered (or refused with 503) within seconds.
SERVE = Deadlines("serve", connect=2, statement=5, lock=2, idle_in_transaction=5, busy=5)
# Schema upgrades (any role, at start): a migration may rewrite a large table.
MIGRATION = Deadlines(
    "migration", connect=5, statement=600, lock=60, idle_in_transaction=600, busy=60
)

ROLES = {deadline.role: deadline for deadline in (BEAT, WATCH, COMMAND, TRACKING, SERVE)}
