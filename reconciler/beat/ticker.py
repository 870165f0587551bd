"""One Beat tick: claim due slots in the database, publish them, recover what was not sent.

``Ticker.tick(now)`` is the whole scheduler minus Celery: ``reconciler.beat`` calls it
from ``DatabaseScheduler.tick`` with a ``CeleryPublisher``; tests call it with an
injected clock and a fake ``Publisher``. Order of work (the outbox pattern): a slot is
claimed and its ``pending`` execution row written in one transaction; the message is
published after the commit; ``published_at`` is set once the broker took it. Each
claim carries this beat as its owner and a lease (``reconciler.store.leases``): a beat
publishes only what it still holds, and rows left unpublished (a beat killed or stalled
in between, a broker failure) are taken over by any beat once their lease has lapsed by
the database's clock, then sent, or failed with the reason when the catch-up policy
drops them (docs/guarantees.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.beat.refusals import publishable
from reconciler.core.firing import DEFAULT_GRACE, decide
from reconciler.core.spec import TaskSpec, stored_spec
from reconciler.errors import DatabaseUnavailable, StoredSpecUnreadable
from reconciler.store import leases, scheduling
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
RECOVERY_AGE = dt.timedelta(seconds=5)
"""A row claimed before claims had leases (migration 0004) is taken over this long after
it was queued, by the database's clock."""
RECOVERY_EVERY = dt.timedelta(seconds=5)
HEARTBEAT_EVERY = dt.timedelta(seconds=1)
MAX_SLEEP = 0.25
"""Longest sleep between ticks: a change applied while beat sleeps is picked up by then."""
MIN_SLEEP = 0.01
"""Shortest sleep while slots are close: batches slots instead of one tick per slot."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Message:
    """One execution to send: the Celery task, its arguments and options, and its id."""

    name: str
    task: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    scheduled_for: dt.datetime | None
    trigger: str = "schedule"


class PublishFailed(Exception):
    """The broker failed part-way; ``sent`` holds the ids it took before that."""

    def __init__(self, message: str, sent: Sequence[str]) -> None:
        super().__init__(message)
        self.sent = list(sent)


class Publisher(Protocol):
    """Where messages go: ``reconciler.beat.publisher.CeleryPublisher``, or a fake in tests."""

    def publish(self, messages: Sequence[Message]) -> list[str]:
        """Send in order; return the ids sent; raise ``PublishFailed`` if the broker fails."""
        ...

    def reachable(self) -> bool:
        """Whether the broker answers now (asked while it is known to be down)."""
        ...


def message_for(
    spec: TaskSpec, task_id: str, scheduled_for: dt.datetime | None, trigger: str = "schedule"
) -> Message:
    return Message(
        name=spec.name,
        task=spec.task,
        task_id=task_id,
        args=list(spec.args),
        kwargs=dict(spec.kwargs),
        options=spec.options.apply_async_kwargs(),
        scheduled_for=scheduled_for,
        trigger=trigger,
    )


@dataclass
class _Periodic:
    every: dt.timedelta
    callback: Callable[[dt.datetime], object]
    last: dt.datetime | None = None


@dataclass
class TickStats:
    """Counters since start, for logs and the benchmark."""

    ticks: int = 0
    fired: int = 0
    missed: int = 0
    skipped: int = 0
    recovered: int = 0
    failed_unpublished: int = 0
    lease_lost: int = 0
    """Claimed executions not sent because their lease had lapsed (left to recovery)."""


@dataclass
class _Health:
    """Up/down of one dependency, logged once per change (never once per tick)."""

    what: str
    up: bool | None = None

    def ok(self) -> None:
        if self.up is False:
            log.warning("beat: %s is back", self.what)
        self.up = True

    def fail(self, reason: str) -> None:
        if self.up is not False:
            log.error("beat: %s unavailable, still ticking: %s", self.what, reason)
        self.up = False


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
        shield: Callable[[], AbstractContextManager[object]] = nullcontext,
        lease: dt.timedelta = LEASE,
        lease_margin: dt.timedelta = LEASE_MARGIN,
        publish_chunk: int = PUBLISH_CHUNK,
    ) -> None:
        if not dt.timedelta(0) <= lease_margin < lease:
            raise ValueError(f"lease margin {lease_margin} must be below the lease {lease}")
        self.database = database
        self.publisher = publisher
        self.grace = grace
        self.batch = batch
        self.max_batches = max_batches
        self.clock = clock
        # Held from a publish until its ``published_at`` is written: beat defers SIGTERM
        # there, so a stopped beat never leaves a sent message looking unsent.
        self.shield = shield
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.instance = instance or f"{self.hostname}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.lease = leases.Lease(self.instance, lease.total_seconds())
        # How long after starting a claim its lease may be relied on without renewing it.
        self.lease_window = (lease - lease_margin).total_seconds()
        self.publish_chunk = publish_chunk
        self.started_at = clock()
        self.stats = TickStats()
        self.specs: dict[str, tuple[int, TaskSpec]] = {}
        self.seen_seq: int | None = None
        self.database_health = _Health("database")
        self.broker_health = _Health("broker")
        self._periodic: list[_Periodic] = []
        self._unmarked: list[str] = []
        self._last_heartbeat: dt.datetime | None = None
        self._last_recovery: dt.datetime | None = None

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
            if self._unmarked:
                self._mark(list(self._unmarked))
            if self.broker_health.up is False:
                if not self._broker_back():
                    self._idle(now)
                    self.database_health.ok()
                    return MAX_SLEEP * 4
                # Reconnecting took time: decide the catch-up at the real present.
                now = now if injected else self.clock()
            if self._recovery_due(now):
                self._recover(now)
            delay = MAX_SLEEP
            for _ in range(self.max_batches):
                delay, full = self._claim_round(now)
                if not full or self.broker_health.up is False:
                    break
            self._run_periodic(now)
            self.database_health.ok()
            return delay
        except scheduling.DatabaseBusy as exc:
            # Contention with another beat or with tracking: retried on the next tick.
            log.info("beat: %s; retrying", exc)
            return MIN_SLEEP
        except DatabaseUnavailable as exc:
            self.database_health.fail(str(exc))
            return MAX_SLEEP * 4

    def _claim_round(self, now: dt.datetime) -> tuple[float, bool]:
        """One transaction: changes, heartbeat, claim a batch; then publish it.

        Returns the delay until the next tick and whether more is due at ``now``.
        """
        # Taken before the claim: the database starts the lease later than this.
        started = time.monotonic()
        with scheduling.transaction(self.database) as session:
            self._pickup(session)
            self._heartbeat(session, now)
            due = scheduling.due_slots(session, now, self.batch)
            messages = self._claim(session, due, now) if due else []
            full = len(due) >= self.batch
            upcoming = None if full else scheduling.next_due(session)
        if messages:
            self._send(messages, started)
        # More is due now (claims moved slots still due): go again. Due rows that were
        # all locked by another beat are its work: wait for the next tick instead.
        if full or (due and upcoming is not None and upcoming <= now):
            return 0.0, True
        if upcoming is None:
            return MAX_SLEEP, False
        if upcoming <= now:
            return MIN_SLEEP, False
        wait = (upcoming - self.clock()).total_seconds()
        return min(MAX_SLEEP, max(MIN_SLEEP, wait)), False

    def _claim(
        self, session: Any, due: list[scheduling.DueSlot], now: dt.datetime
    ) -> list[Message]:
        specs = self._specs(session, due)
        skip_names = [d.name for d in due if d.name in specs and specs[d.name].overlap == "skip"]
        running = scheduling.unfinished(session, skip_names)
        claims: list[scheduling.Claim] = []
        fires: dict[int, Message] = {}
        missed: dict[str, int] = {}
        for slot in due:
            spec = specs.get(slot.name)
            if spec is None:
                # Unreadable spec: park the task instead of failing every tick.
                claims.append(scheduling.Claim(slot.task_id, slot.slot, None, None))
                continue
            decision = decide(
                spec, slot.slot, slot.anchor, now, running=slot.name in running, grace=self.grace
            )
            claims.append(
                scheduling.Claim(
                    slot.task_id,
                    slot.slot,
                    decision.next_run_at,
                    decision.fire,
                    decision.missed,
                    decision.skipped,
                )
            )
            if decision.missed:
                missed[slot.name] = decision.missed
            if decision.skipped:
                log.info("beat: %s slot %s skipped: still running", slot.name, slot.slot)
            self.stats.missed += decision.missed
            self.stats.skipped += decision.skipped
            if decision.fire is not None:
                fires[slot.task_id] = message_for(spec, str(uuid.uuid4()), decision.fire)
        if missed:
            # One line per round, not per task: after an outage thousands may have missed.
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
        moved = scheduling.claim(session, claims)
        claimed = [message for task_id, message in fires.items() if task_id in moved]
        inserted = scheduling.insert_executions(
            session,
            [
                scheduling.NewExecution(
                    m.name, m.task_id, "schedule", m.scheduled_for, m.args, m.kwargs, now
                )
                for m in claimed
            ],
            self.lease,
        )
        return publishable(session, [m for m in claimed if m.task_id in inserted], now)

    def _send(self, messages: Sequence[Message], started: float, recovered: bool = False) -> None:
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
            chunk, pending = pending[: self.publish_chunk], pending[self.publish_chunk :]
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
                self._mark(list(self._unmarked))
        if recovered and sent:
            log.warning("beat: sent %d claimed execution(s) left unpublished", len(sent))
        return ok

    def _mark(self, ids: list[str]) -> None:
        """Set ``published_at``; kept in memory and retried while the database is away."""
        with scheduling.transaction(self.database) as session:
            scheduling.mark_published(session, ids, self.clock())
        done = set(ids)
        self._unmarked = [task_id for task_id in self._unmarked if task_id not in done]

    def _broker_back(self) -> bool:
        if not self.publisher.reachable():
            return False
        self.broker_health.ok()
        self._last_recovery = None
        return True

    def _idle(self, now: dt.datetime) -> None:
        """While the broker is away: keep the heartbeat and the change marker current.

        Nothing is claimed, so slots stay in ``next_run_at`` and the catch-up policy
        decides about them when the broker is back.
        """
        with scheduling.transaction(self.database) as session:
            self._pickup(session)
            self._heartbeat(session, now)

    # --- recovery ---------------------------------------------------------------------

    def _recovery_due(self, now: dt.datetime) -> bool:
        return self._last_recovery is None or now - self._last_recovery >= RECOVERY_EVERY

    def _recover(self, now: dt.datetime) -> None:
        """Send (or fail, by the catch-up policy) executions claimed but never published.

        Rows whose lease has lapsed by the database's clock, and this beat's own, are
        first taken over by compare-and-set (``leases.take_over``), then sent under the
        new lease. A row within the grace is sent; an older one is sent only when its
        task has ``catchup: once`` and it is the task's latest such row; the rest are
        failed with the reason.
        """
        self._last_recovery = now
        started = time.monotonic()
        with scheduling.transaction(self.database) as session:
            rows = leases.take_over(session, self.lease, RECOVERY_AGE.total_seconds(), self.batch)
            if not rows:
                return
            specs = self._specs_by_name(session, sorted({row.task_name for row in rows}))
            latest = {row.task_name: row.id for row in rows}
            send: list[Message] = []
            dropped: dict[str, list[int]] = {}
            for row in rows:
                spec = specs.get(row.task_name)
                if spec is None:
                    dropped.setdefault("its task is deleted", []).append(row.id)
                    continue
                on_time = now - (row.scheduled_for or row.queued_at) <= self.grace
                if on_time or (spec.catchup == "once" and latest[row.task_name] == row.id):
                    options = spec.options.apply_async_kwargs()
                    send.append(
                        Message(
                            spec.name,
                            spec.task,
                            row.celery_task_id,
                            row.args,
                            row.kwargs,
                            options,
                            row.scheduled_for,
                            row.trigger,
                        )
                    )
                else:
                    why = f"later than the {self.grace.total_seconds():g} s grace (catchup: skip)"
                    dropped.setdefault(why, []).append(row.id)
            for why, ids in dropped.items():
                reason = f"not published: beat or broker stopped before sending it; {why}"
                scheduling.fail_unpublished(session, ids, reason, now)
                self.stats.failed_unpublished += len(ids)
                log.warning("beat: %d claimed execution(s) not sent: %s", len(ids), why)
            send = publishable(session, send, self.clock())  # unset secret_env variables
        if send:
            self._send(send, started, recovered=True)

    # --- specs and changes --------------------------------------------------------------

    def _pickup(self, session: Any) -> None:
        """Refresh the spec cache from the rows changed since the marker last seen."""
        seq = scheduling.change_marker(session)
        if self.seen_seq is None:
            self.seen_seq = seq
            return
        if seq == self.seen_seq:
            return
        for row in scheduling.changed_specs(session, self.seen_seq):
            if row.live:
                self._cache(row)
            else:
                self.specs.pop(row.name, None)
        log.debug("beat: changes up to %d picked up", seq)
        self.seen_seq = seq

    def _cache(self, row: scheduling.SpecRow) -> TaskSpec | None:
        try:
            spec = stored_spec(row.name, row.spec)
        except StoredSpecUnreadable as exc:
            log.error("beat: %s; its slots wait until then", exc)
            self.specs.pop(row.name, None)
            return None
        self.specs[row.name] = (row.change_seq, spec)
        return spec

    def _specs(self, session: Any, due: list[scheduling.DueSlot]) -> dict[str, TaskSpec]:
        """Specs for due tasks: from the cache when its version matches the row's."""
        found: dict[str, TaskSpec] = {}
        stale: list[str] = []
        for slot in due:
            cached = self.specs.get(slot.name)
            if cached is not None and cached[0] == slot.change_seq:
                found[slot.name] = cached[1]
            else:
                stale.append(slot.name)
        if stale:
            found.update(self._load(session, stale))
        return found

    def _specs_by_name(self, session: Any, names: Sequence[str]) -> dict[str, TaskSpec]:
        """Specs of live tasks by name, from the cache or else from the database."""
        found = {name: self.specs[name][1] for name in names if name in self.specs}
        missing = [name for name in names if name not in found]
        if missing:
            found.update(self._load(session, missing))
        return found

    def _load(self, session: Any, names: Sequence[str]) -> dict[str, TaskSpec]:
        found: dict[str, TaskSpec] = {}
        for row in scheduling.specs_by_name(session, names):
            if not row.live:
                self.specs.pop(row.name, None)
                continue
            spec = self._cache(row)
            if spec is not None:
                found[row.name] = spec
        return found

    def _heartbeat(self, session: Any, now: dt.datetime) -> None:
        if self._last_heartbeat is not None and now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        scheduling.heartbeat(session, self.instance, self.hostname, self.pid, self.started_at, now)
        self._last_heartbeat = now

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

    def cached(self) -> dict[str, TaskSpec]:
        return {name: spec for name, (_, spec) in self.specs.items()}
