"""Sending claimed executions: in chunks, each only while this beat holds their lease
(renewed by compare-and-set when the publish runs late), then marking them published.

A message leaves only after its ``pending`` row is committed, and ``published_at`` is set
once the broker took it (the outbox pattern, docs/guarantees.md). A message claimed
ahead of its slot (the look-ahead, docs/beat.md) is held in memory and published at its
slot's time, never before: a worker would run it early.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from reconciler.beat.health import Health, TickStats
from reconciler.beat.message import Message, Publisher, PublishFailed
from reconciler.store import leases, outbox, scheduling
from reconciler.store.database import Database

log = logging.getLogger("reconciler.beat")

LEASE = dt.timedelta(seconds=10)
"""How long a claim stays its beat's alone, by the database's clock. Far above a healthy
claim-to-publish time (milliseconds), so a live beat is never raced for its own batch;
short enough that a dead beat's claims are sent well within the 60 s catch-up grace."""
LEASE_MARGIN = dt.timedelta(seconds=5)
"""Beat publishes under a claim without renewing it only until ``LEASE - LEASE_MARGIN``
after it started the claim (by its monotonic clock). The margin outlasts one chunk's
publish deadline (``reconciler.beat.publisher``: 2 s to connect, 3 s per read or write), so
no publish still hands messages to the broker once the lease has lapsed."""
PUBLISH_CHUNK = 200
"""Messages published (and marked) between two lease checks."""
LOOKAHEAD = dt.timedelta(0)
"""How far ahead of the present beat claims slots by default (``RECONCILER_BEAT_LOOKAHEAD``;
off: each slot is claimed when due; docs/beat.md says when to turn it on)."""
MAX_LOOKAHEAD = dt.timedelta(seconds=2)
"""The longest look-ahead allowed: well inside the lease window, so a held message is
published long before its lease needs renewing."""


@dataclass(frozen=True)
class _Held:
    message: Message
    started: float
    recovered: bool


class Sender:
    """Publishes one beat's claimed messages and records which the broker took."""

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        lease: leases.Lease,
        lease_window: float,
        *,
        chunk: int,
        shield: Callable[[], AbstractContextManager[object]],
        clock: Callable[[], dt.datetime],
        stats: TickStats,
        broker_health: Health,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.lease = lease
        # How long after starting a claim its lease may be relied on without renewing it.
        self.lease_window = lease_window
        self.chunk = chunk
        # Held from a publish until its ``published_at`` is written: beat defers SIGTERM
        # there, so a stopped beat never leaves a sent message looking unsent.
        self.shield = shield
        self.clock = clock
        self.stats = stats
        self.broker_health = broker_health
        self._unmarked: list[str] = []
        # Claimed messages whose slot is still to come: by Celery task id, and their
        # slots in a heap (an entry whose id left ``_held`` is stale and skipped).
        self._held: dict[str, _Held] = {}
        self._due: list[tuple[dt.datetime, str]] = []

    def dispatch(
        self,
        messages: Sequence[Message],
        started: float,
        now: dt.datetime,
        recovered: bool = False,
    ) -> None:
        """Send what is due at ``now``; hold the rest until its slot (``release``).

        A message already held (this beat's own claim, taken over again by recovery) is
        held once, under the later ``started`` (its lease was renewed).
        """
        send: list[Message] = []
        for message in messages:
            slot = message.scheduled_for
            if slot is None or slot <= now:
                self._held.pop(message.task_id, None)
                send.append(message)
                continue
            if message.task_id not in self._held:
                heapq.heappush(self._due, (slot, message.task_id))
            self._held[message.task_id] = _Held(message, started, recovered)
        if send:
            self.send(send, started, recovered)

    def release(self, now: dt.datetime) -> None:
        """Send the held messages whose slot has come, oldest first."""
        due: list[_Held] = []
        while self._due and self._due[0][0] <= now:
            _, task_id = heapq.heappop(self._due)
            held = self._held.pop(task_id, None)
            if held is not None:
                due.append(held)
        for recovered in (False, True):
            group = [held for held in due if held.recovered is recovered]
            if group:
                # The oldest claim's start bounds the lease of the whole group.
                started = min(held.started for held in group)
                self.send([held.message for held in group], started, recovered)

    def next_held(self) -> dt.datetime | None:
        """The slot of the next held message, if any."""
        while self._due and self._due[0][1] not in self._held:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def held(self) -> list[Message]:
        return [held.message for held in self._held.values()]

    def drop_held(self) -> list[str]:
        """Forget the held messages (their rows stay claimed and unpublished, for
        recovery); return their Celery task ids."""
        ids = list(self._held)
        self._held, self._due = {}, []
        return ids

    def send(self, messages: Sequence[Message], started: float, recovered: bool = False) -> None:
        """Publish claimed ``messages`` in chunks, each only while this beat holds its lease.

        ``started`` is the monotonic time before the claim. Past the lease window the
        lease on what is left is renewed by compare-and-set; what could not be renewed
        lapsed and may belong to another beat already: it is left to that beat.
        """
        deadline = started + self.lease_window
        pending = list(messages)
        lost = 0
        while pending:
            if time.monotonic() >= deadline:
                renewing = time.monotonic()
                with scheduling.transaction(self.database) as session:
                    held = leases.renew(session, self.lease, [m.task_id for m in pending])
                deadline = renewing + self.lease_window
                lost += len(pending) - len(held)
                pending = [m for m in pending if m.task_id in held]
                continue
            chunk, pending = pending[: self.chunk], pending[self.chunk :]
            if not self._publish(chunk, recovered):
                break
        if lost:
            self.stats.lease_lost += lost
            log.warning(
                "beat: %d claimed execution(s) not sent: their lease lapsed while this beat "
                "was held up (whichever beat takes them over sends them)",
                lost,
            )

    def _publish(self, chunk: Sequence[Message], recovered: bool) -> bool:
        """Publish one chunk and mark what went; false when the broker failed."""
        with self.shield():
            try:
                sent = self.publisher.publish(chunk)
            except PublishFailed as exc:
                self.broker_health.fail(str(exc))
                sent, ok = exc.sent, False
            else:
                self.broker_health.ok()
                ok = True
            if recovered:
                self.stats.recovered += len(sent)
            else:
                self.stats.fired += len(sent)
            if sent:
                self._unmarked.extend(sent)
                self.mark_sent()
        if recovered and sent:
            log.warning("beat: sent %d claimed execution(s) left unpublished", len(sent))
        return ok

    def mark_in(self, session: Any) -> list[str]:
        """Set ``published_at`` on what was sent, in the caller's transaction; return the
        ids to pass to ``marked`` once it has committed."""
        ids = list(self._unmarked)
        outbox.mark_published(session, ids, self.clock())
        return ids

    def marked(self, ids: Sequence[str]) -> None:
        done = set(ids)
        self._unmarked = [task_id for task_id in self._unmarked if task_id not in done]

    def mark_sent(self) -> None:
        """Set ``published_at`` on what was sent; kept in memory and retried while the
        database is away."""
        if not self._unmarked:
            return
        with scheduling.transaction(self.database) as session:
            ids = self.mark_in(session)
        self.marked(ids)

    def broker_back(self) -> bool:
        """Whether the broker, known to be down, answers again."""
        if not self.publisher.reachable():
            return False
        self.broker_health.ok()
        return True
