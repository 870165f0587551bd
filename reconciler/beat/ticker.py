"""One Beat tick: claim due slots in the database, publish them, recover what was not sent.

``Ticker.tick(now)`` is the whole scheduler minus Celery: ``reconciler.beat`` calls it
from ``DatabaseScheduler.tick`` with a ``CeleryPublisher``; tests call it with an
injected clock and a fake ``Publisher`` (``reconciler.beat.message``). Order of work
(the outbox pattern): a slot is claimed and its ``pending`` execution row written in one
transaction; the message is published after the commit and ``published_at`` set once
the broker took it (``reconciler.beat.sending``). Each claim carries this beat as its
owner and a lease (``reconciler.store.leases``): a beat publishes only what it still
holds, and rows left unpublished are taken over by any beat once their lease has lapsed
(``reconciler.beat.recovery``, docs/guarantees.md). Each beat's heartbeat is kept under
its stable name (``reconciler.store.heartbeats``, docs/beat.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from reconciler.beat import recovery
from reconciler.beat.health import Health, TickStats
from reconciler.beat.message import Message, Publisher, utcnow
from reconciler.beat.refusals import publishable
from reconciler.beat.sending import LEASE, LEASE_MARGIN, PUBLISH_CHUNK, Sender
from reconciler.beat.specs import CachedTask, SpecCache
from reconciler.core.firing import DEFAULT_GRACE, decide
from reconciler.errors import DatabaseUnavailable
from reconciler.settings import process_name
from reconciler.store import heartbeats, leases, outbox, scheduling
from reconciler.store.database import Database
from reconciler.vocabulary import Trigger

log = logging.getLogger("reconciler.beat")

RECOVERY_EVERY = dt.timedelta(seconds=5)
HEARTBEAT_EVERY = dt.timedelta(seconds=1)
FORGET_EVERY = dt.timedelta(seconds=15)
"""How often a beat removes the heartbeats of beats that stopped long ago."""
NAME_SETTLE = dt.timedelta(seconds=5)
"""How long the heartbeat holding this beat's name must stand still before this beat
takes the name over (its holder was killed); one that moves is another live beat."""
MAX_SLEEP = 0.25
"""Longest sleep between ticks: a change applied while beat sleeps is picked up by then."""
MIN_SLEEP = 0.01
"""Shortest sleep while slots are close: batches slots instead of one tick per slot."""


@dataclass
class _Periodic:
    every: dt.timedelta
    callback: Callable[[dt.datetime], object]
    last: dt.datetime | None = None


class Ticker:
    """The scheduler state of one beat process: spec cache, change marker, health."""

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        grace: dt.timedelta = DEFAULT_GRACE,
        batch: int = 1000,
        max_batches: int = 20,
        clock: Callable[[], dt.datetime] = utcnow,
        instance: str | None = None,
        name: str | None = None,
        shield: Callable[[], AbstractContextManager[object]] = nullcontext,
        lease: dt.timedelta = LEASE,
        lease_margin: dt.timedelta = LEASE_MARGIN,
        publish_chunk: int = PUBLISH_CHUNK,
        lookahead: dt.timedelta = dt.timedelta(0),
    ) -> None:
        if not dt.timedelta(0) <= lease_margin < lease:
            raise ValueError(f"lease margin {lease_margin} must be below the lease {lease}")
        if not dt.timedelta(0) <= lookahead < (lease - lease_margin) / 2:
            raise ValueError(
                f"look-ahead {lookahead} must be below half the lease window "
                f"{lease - lease_margin} (lease less margin)"
            )
        self.database = database
        self.publisher = publisher
        self.grace = grace
        self.batch = batch
        self.max_batches = max_batches
        self.clock = clock
        # Slots due within this much of the present are claimed now and published at
        # their own time (0: claimed when due, every tick a round).
        self.lookahead = lookahead
        self._polled: dt.datetime | None = None
        self._claimed_to: dt.datetime | None = None
        self._upcoming: dt.datetime | None = None
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.instance = instance or f"{self.hostname}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.lease = leases.Lease(self.instance, lease.total_seconds())
        self.started_at = clock()
        self.naming = heartbeats.Naming(
            heartbeats.BEATS,
            name or process_name("RECONCILER_BEAT_NAME"),
            self.instance,
            self.hostname,
            self.pid,
            self.started_at,
            settle=NAME_SETTLE,
            stale=heartbeats.BEAT_ALIVE_WITHIN,
        )
        self.stats = TickStats()
        self.specs = SpecCache()
        self.database_health = Health("database")
        self.broker_health = Health("broker")
        self.sender = Sender(
            database,
            publisher,
            self.lease,
            (lease - lease_margin).total_seconds(),
            chunk=publish_chunk,
            shield=shield,
            clock=clock,
            stats=self.stats,
            broker_health=self.broker_health,
        )
        self._periodic: list[_Periodic] = []
        self._last_heartbeat: dt.datetime | None = None
        self._last_recovery: dt.datetime | None = None
        self.every(FORGET_EVERY, self._forget)

    def every(self, interval: dt.timedelta, callback: Callable[[dt.datetime], object]) -> None:
        """Run ``callback(now)`` from the tick at most once per ``interval`` (e.g. a reaper)."""
        self._periodic.append(_Periodic(interval, callback))

    # --- the tick ---------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> float:
        """Do one round of work at ``now``; return the seconds to sleep before the next."""
        injected = now is not None
        now = now or self.clock()
        self.stats.ticks += 1
        try:
            self.sender.mark_sent()
            if self.broker_health.up is False:
                # Held claims stay unpublished in the database: recovery sends them (or
                # fails them by the catch-up policy) once the broker is back.
                self.sender.drop_held()
                if not self.sender.broker_back():
                    self._idle(now)
                    self.database_health.ok()
                    return MAX_SLEEP * 4
                self._last_recovery = None
                # Reconnecting took time: decide the catch-up at the real present.
                now = now if injected else self.clock()
            self.sender.release(now)
            if self._recovery_due(now):
                self._recover(now)
            delay = MAX_SLEEP
            if self._round_due(now):
                for _ in range(self.max_batches):
                    delay, full = self._claim_round(now)
                    if not full or self.broker_health.up is False:
                        break
            elif self._upcoming is not None:
                delay = self._until(self._upcoming, MIN_SLEEP)
            if self.lookahead:
                delay = min(delay, self._until(self._polled or now, 0.0, MAX_SLEEP))
            held = self.sender.next_held()
            if held is not None:
                delay = min(delay, self._until(held, 0.0))
            self._run_periodic(now)
            self.database_health.ok()
            return delay
        except scheduling.DatabaseBusy as exc:
            # Contention with another beat or with tracking: retried on the next tick.
            log.info("beat: %s; retrying", exc)
            self._polled = None
            return MIN_SLEEP
        except DatabaseUnavailable as exc:
            self._polled = None
            self.database_health.fail(str(exc))
            return MAX_SLEEP * 4

    def _round_due(self, now: dt.datetime) -> bool:
        """Whether this tick claims: always without look-ahead; with it, when a slot not
        yet claimed is due, or ``MAX_SLEEP`` after the last round (changes, new slots
        entering the horizon). The ticks in between only publish what is held."""
        if not self.lookahead or self._polled is None:
            return True
        if self._upcoming is not None and self._upcoming <= now:
            return True
        return (now - self._polled).total_seconds() >= MAX_SLEEP

    def _until(self, moment: dt.datetime, shortest: float, after: float = 0.0) -> float:
        """Seconds from the clock's now until ``after`` seconds past ``moment``, within
        ``[shortest, MAX_SLEEP]``."""
        wait = (moment - self.clock()).total_seconds() + after
        return min(MAX_SLEEP, max(shortest, wait))

    def _claim_round(self, now: dt.datetime) -> tuple[float, bool]:
        """One transaction: changes, heartbeat, claim a batch due by the horizon (``now``
        plus the look-ahead); then publish what is due and hold the rest until its slot.

        Returns the delay until the next tick and whether more is due by the horizon.
        """
        # Taken before the claim: the database starts the lease later than this.
        started = time.monotonic()
        horizon = now + self.lookahead
        claimed_to = self._claimed_to
        keep = now + (self.lookahead + dt.timedelta(seconds=MAX_SLEEP)) / 2
        if claimed_to is not None and keep <= claimed_to <= horizon:
            # Enough stays claimed until the next round: this one only takes what changes
            # put there (the horizon moves on every other round).
            horizon = claimed_to
        with scheduling.transaction(self.database) as session:
            self.specs.pickup(session)
            self._heartbeat(session, now)
            due = scheduling.due_slots(session, horizon, self.batch)
            messages, moved_to, waiting = (
                self._claim(session, due, now) if due else ([], None, None)
            )
            full = len(due) >= self.batch
            if self.lookahead.total_seconds() >= MAX_SLEEP:
                # The next round (at most MAX_SLEEP away) still claims ahead of any slot
                # not due by this horizon; only this round's own moves are asked about.
                upcoming = moved_to
            else:
                upcoming = None if full else scheduling.next_due(session)
        self._polled, self._claimed_to = now, horizon
        self._upcoming = min((t for t in (upcoming, waiting) if t is not None), default=None)
        if messages:
            self.sender.dispatch(messages, started, now)
        # More is due (claims moved slots still due): go again. Due rows that were all
        # locked by another beat wait for the next tick instead, and slots left to be
        # claimed when they come wake the tick then.
        if full or (due and upcoming is not None and upcoming <= horizon):
            return 0.0, True
        if upcoming is not None and upcoming <= horizon:
            return MIN_SLEEP, False
        if self._upcoming is None:
            return MAX_SLEEP, False
        return self._until(self._upcoming, MIN_SLEEP), False

    def _claim(
        self, session: Any, due: list[scheduling.DueSlot], now: dt.datetime
    ) -> tuple[list[Message], dt.datetime | None, dt.datetime | None]:
        """Decide and claim ``due``; return the messages to send, the earliest slot the
        claimed tasks moved on to, and the earliest slot left to be claimed when due."""
        cached = self.specs.for_due(session, due)
        skip_names = [d.name for d in due if d.name in cached and cached[d.name].overlap == "skip"]
        running = scheduling.unfinished(session, skip_names)
        claims: list[scheduling.Claim] = []
        fires: dict[int, Message] = {}
        missed: dict[str, int] = {}
        queued: dict[int, dt.datetime] = {}
        waiting: list[dt.datetime] = []
        for slot in due:
            entry = cached.get(slot.name)
            if entry is None:
                # Unreadable spec: park the task instead of failing every tick.
                claims.append(scheduling.Claim(slot.task_id, slot.slot, None, None))
                continue
            if slot.slot > now and entry.overlap == "skip":
                # Whether it still runs is asked when the slot comes, not ahead of it.
                waiting.append(slot.slot)
                continue
            # A slot claimed ahead is decided at its own time (it is on time then).
            at = max(now, slot.slot)
            decision = decide(
                entry.schedule,
                slot.slot,
                slot.anchor,
                at,
                running=slot.name in running,
                grace=self.grace,
            )
            claims.append(
                scheduling.Claim(
                    slot.task_id,
                    slot.slot,
                    decision.next_run_at,
                    decision.fire,
                    decision.missed,
                    decision.skipped,
                    decision.calendar_skipped,
                )
            )
            if decision.missed:
                missed[slot.name] = decision.missed
            if decision.reason is not None:
                log.info("beat: %s slot %s skipped: %s", slot.name, slot.slot, decision.reason)
            self.stats.missed += decision.missed
            self.stats.skipped += decision.skipped
            self.stats.calendar_skipped += decision.calendar_skipped
            if decision.fire is not None:
                fires[slot.task_id] = entry.message(slot.name, str(uuid.uuid4()), decision.fire)
                queued[slot.task_id] = at
        if missed:
            self._log_missed(missed)
        moved = scheduling.claim(session, claims)
        claimed = [message for task_id, message in fires.items() if task_id in moved]
        inserted = outbox.insert_executions(
            session,
            [
                outbox.NewExecution(
                    m.name,
                    m.task_id,
                    Trigger.SCHEDULE,
                    m.scheduled_for,
                    m.args,
                    m.kwargs,
                    queued[task_id],
                )
                for task_id, m in fires.items()
                if task_id in moved
            ],
            self.lease,
        )
        moved_to = min(
            (c.next_run_at for c in claims if c.task_id in moved and c.next_run_at is not None),
            default=None,
        )
        sendable = publishable(session, [m for m in claimed if m.task_id in inserted], now)
        return sendable, moved_to, min(waiting, default=None)

    def _log_missed(self, missed: dict[str, int]) -> None:
        """One line per round, not per task: after an outage thousands may have missed."""
        names = ", ".join(f"{name} ({count})" for name, count in list(missed.items())[:5])
        more = f" and {len(missed) - 5} more" if len(missed) > 5 else ""
        log.warning(
            "beat: %d slot(s) missed (older than the %g s grace) by %s%s; "
            "dropped by catchup: skip, run once by catchup: once",
            sum(missed.values()),
            self.grace.total_seconds(),
            names,
            more,
        )

    def _idle(self, now: dt.datetime) -> None:
        """While the broker is away: keep the heartbeat and the change marker current.

        Nothing is claimed, so slots stay in ``next_run_at`` and the catch-up policy
        decides about them when the broker is back.
        """
        with scheduling.transaction(self.database) as session:
            self.specs.pickup(session)
            self._heartbeat(session, now)

    def _recovery_due(self, now: dt.datetime) -> bool:
        return self._last_recovery is None or now - self._last_recovery >= RECOVERY_EVERY

    def _recover(self, now: dt.datetime) -> None:
        """Send (or fail, by the catch-up policy) executions claimed but never published."""
        self._last_recovery = now
        started = time.monotonic()
        with scheduling.transaction(self.database) as session:
            send = recovery.take_over(
                session,
                self.lease,
                self.batch,
                self.specs,
                self.grace,
                now,
                self.stats,
                self.clock,
                held=[message.task_id for message in self.sender.held()],
            )
        if send:
            self.sender.dispatch(send, started, now, recovered=True)

    def _heartbeat(self, session: Any, now: dt.datetime) -> None:
        if self._last_heartbeat is not None and now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        self.naming.beat(session, now, {})
        self._last_heartbeat = now

    def _forget(self, now: dt.datetime) -> None:
        """Remove the heartbeats of beats that stopped without removing their own."""
        with scheduling.transaction(self.database) as session:
            gone = heartbeats.forget_beats(session, now)
        if gone:
            log.info(
                "beat: removed the heartbeat of %s: no tick for %s",
                ", ".join(gone),
                heartbeats.BEAT_FORGET_AFTER,
            )

    def drain(self, within: float) -> None:
        """Publish what is held, each at its slot, for at most ``within`` seconds: a
        stopping beat sends the claims it made ahead instead of leaving them late."""
        end = time.monotonic() + within
        while (slot := self.sender.next_held()) is not None:
            wait = max(0.0, (slot - self.clock()).total_seconds())
            if time.monotonic() + wait > end:
                return
            time.sleep(wait)
            self.sender.release(self.clock())
            if self.broker_health.up is False:
                return

    def leave(self) -> None:
        """Remove this beat's heartbeat: it stops (docs/beat.md). Claims held for a
        later slot are given up, so any beat's recovery sends them at once."""
        held = self.sender.drop_held()
        with scheduling.transaction(self.database) as session:
            self.sender.marked(self.sender.mark_in(session))
            leases.give_up(session, self.lease, held)
            self.naming.leave(session)

    @property
    def name(self) -> str | None:
        """The name this beat's heartbeat is under (None until written)."""
        return self.naming.name

    def _run_periodic(self, now: dt.datetime) -> None:
        for job in self._periodic:
            if job.last is not None and now - job.last < job.every:
                continue
            job.last = now
            try:
                job.callback(now)
            except DatabaseUnavailable:
                raise
            except Exception:
                log.exception("beat: periodic job %r failed", job.callback)

    # --- inspection -------------------------------------------------------------------

    def cached(self) -> dict[str, CachedTask]:
        return self.specs.cached()
