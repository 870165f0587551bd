"""The alert notifier beat runs beside its ticks: every few seconds it evaluates each
task's ``alerts`` against the database, records the episodes, and sends what is owed to
its owner's webhook (docs/beat.md, "Alerts").

It runs on its own thread with its own database sessions, so a webhook that is down or
hangs never slows a tick: a send has deadlines (``reconciler.beat.webhook``), a failed
one is tried again with backoff, and the alert row keeps it until it is sent. Several
beats run it at once: the rows are written and claimed by compare-and-set
(``reconciler.store.alertstate``), so each alert is sent once in the normal case.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.beat.background import Background
from reconciler.beat.message import utcnow
from reconciler.beat.webhook import SendFailed, body, checked_url, post
from reconciler.core.alerting import (
    Clear,
    Condition,
    Execution,
    Fire,
    Health,
    Watched,
    evaluate,
    rules_of,
)
from reconciler.core.alerts import Alerts
from reconciler.errors import DatabaseUnavailable
from reconciler.store import alertstate, notify, scheduling
from reconciler.store.database import Database, first_line

log = logging.getLogger("reconciler.beat")

EVERY = dt.timedelta(seconds=5)
"""How often the conditions are evaluated (and owed messages sent)."""
HOLD = dt.timedelta(minutes=2)
"""How long a claimed alert is this beat's to send before another beat may take it."""
CLAIM_BATCH = 20
WRITE_BATCH = 500
FULL_EVERY = dt.timedelta(minutes=1)
"""How often every task is evaluated; between, only tasks not plainly healthy are read."""
FAILED_MARGIN = dt.timedelta(minutes=1)
"""How far before the last round a failure is looked for (workers' clocks may lag)."""
BACKOFF_FIRST = dt.timedelta(seconds=2)
BACKOFF_MAX = dt.timedelta(minutes=5)

Poster = Callable[[str, dict[str, Any]], None]


def _chunks(
    fires: list[Fire], clears: list[Clear], size: int = WRITE_BATCH
) -> Iterator[tuple[list[Fire], list[Clear]]]:
    """The verdict in transactions of ``size`` rows (the first sight of 10,000 tasks
    records 10,000 baselines)."""
    for start in range(0, max(len(fires), len(clears)), size):
        yield fires[start : start + size], clears[start : start + size]


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed send in a row: 2 s, doubling, up to 5 min."""
    wait: dt.timedelta = BACKOFF_FIRST * (2 ** min(attempts, 16))
    return min(BACKOFF_MAX, wait)


@dataclass
class NotifierStats:
    rounds: int = 0
    fired: int = 0
    sent: int = 0
    failed: int = 0
    evaluate_seconds: float = 0.0
    last_error: str | None = None
    failing: set[str] = field(default_factory=set)  # webhooks (or owners) whose last send failed


class Notifier(Background):
    """Evaluates alerts and sends them, on a thread of its own (``start``/``stop``) or a
    round at a time (``run_once``, with an injected clock in tests)."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        every: dt.timedelta = EVERY,
        poster: Poster = post,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        super().__init__("reconciler-alerts")
        self.database = database
        self.clock = clock
        self.every = every
        self.poster = poster
        self.environ = environ
        self.stats = NotifierStats()
        self._rules: dict[str, Alerts] = {}
        self._seq = -1
        self._missed_seen: dict[str, str] | None = None
        self._failures_alerted: dict[str, dt.datetime] = {}
        self._changed: set[str] = set()  # tasks changed by applies since the last round
        self._last_full: dt.datetime | None = None
        self._last_round: dt.datetime | None = None

    # --- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        self._loop(
            self.run_once,
            first=0.0,
            every=lambda: self.every.total_seconds(),
            failure="alerts not evaluated",
            recovery="alerts evaluated again",
        )

    def _step_failed(self, exc: Exception) -> None:
        self.stats.last_error = first_line(exc)

    # --- one round -------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> None:
        """Evaluate every task's alerts at ``now``, then send what is owed."""
        now = now or self.clock()
        self.stats.rounds += 1
        self.evaluate(now)
        self.send_due(now)

    def evaluate(self, now: dt.datetime) -> int:
        """Record the episodes that fire and resolve those that clear; the new ones' count.

        Reads, the decision and the writes are apart: no transaction stays open while
        Python works (beat's sessions end one idle in a transaction after 3 s).
        """
        started = dt.datetime.now(dt.UTC)
        self._refresh()
        if not self._rules:
            return 0
        with scheduling.transaction(self.database) as session:
            watched, opened = self._read(session, now)
        verdict = evaluate(watched, opened, now)
        new = 0
        for fires, clears in _chunks(verdict.fire, verdict.clear):
            with scheduling.transaction(self.database) as session:
                new += alertstate.record(session, fires, clears, now)
        for fire in verdict.fire:
            if fire.condition == Condition.MISSED and self._missed_seen is not None:
                self._missed_seen[fire.task_name] = fire.episode
            elif fire.condition == Condition.ON_FAILURE:
                known = self._failures_alerted.get(fire.task_name)
                if known is None or fire.since > known:
                    self._failures_alerted[fire.task_name] = fire.since
        self.stats.fired += new
        self.stats.evaluate_seconds += (dt.datetime.now(dt.UTC) - started).total_seconds()
        return new

    def _refresh(self) -> None:
        """Keep each task's rules current: the rows touched by applies since last time."""
        with scheduling.transaction(self.database) as session:
            marker = scheduling.change_marker(session)
            if marker == self._seq:
                return
            rows = alertstate.alert_specs(session, self._seq)
        parsed: dict[str, Alerts | None] = {}  # tasks mostly share their alerts (defaults)
        for name, raw in rows:
            self._changed.add(name)
            key = json.dumps(raw, sort_keys=True)
            if key not in parsed:
                parsed[key] = rules_of({"alerts": raw})
            rules = parsed[key]
            if rules is None:
                self._rules.pop(name, None)
            else:
                self._rules[name] = rules
        self._seq = marker
        if self._rules and self._missed_seen is None:
            with scheduling.transaction(self.database) as session:
                self._missed_seen = alertstate.missed_seen(session)
                self._failures_alerted = alertstate.failures_alerted(session)

    def _read(self, session: Any, now: dt.datetime) -> tuple[list[Watched], list[Any]]:
        opened = alertstate.open_alerts(session)
        running: dict[str, list[Execution]] = {}
        if any(rules.max_duration is not None for rules in self._rules.values()):
            for run in alertstate.running(session):
                running.setdefault(run.task_name, []).append(run)
        # Every task on a full sweep; between sweeps, those a condition may hold for.
        named = {alert.task_name for alert in opened} | set(running) | self._changed
        if self._last_full is None or now - self._last_full >= FULL_EVERY:
            healths = alertstate.health(session)
            self._last_full = now
        else:
            healths = alertstate.health_of_interest(
                session, (self._last_round or now) - FAILED_MARGIN, self._quiet_before(now), named
            )
        seen = {h.name for h in healths}
        if named - seen:  # deleted tasks with open alerts
            healths += alertstate.health(session, named - seen)
        healths = [h for h in healths if h.name in self._rules]
        self._changed = set()
        self._last_round = now
        missed_seen = self._missed_seen or {}
        watched: list[Watched] = []
        for health in healths:
            rules = self._rules[health.name]
            failures: list[Execution] = []
            if rules.on_failure:
                failures = self._new_failures(session, health)
            watched.append(
                Watched(
                    health,
                    rules,
                    failures=failures,
                    running=running.get(health.name, ()),
                    missed_seen=missed_seen.get(health.name),
                )
            )
        return watched, opened

    def _quiet_before(self, now: dt.datetime) -> dt.datetime | None:
        """Tasks without a success (or creation) since this may be past ``success_within``."""
        shortest = min(
            (r.success_within for r in self._rules.values() if r.success_within is not None),
            default=None,
        )
        return None if shortest is None else now - shortest

    def _new_failures(self, session: Any, health: Health) -> list[Execution]:
        """The failures of ``health``'s task not alerted yet, oldest first."""
        known = self._failures_alerted.get(health.name)
        if known is None:
            # First sight, with no alert recorded: failures from now on are new. One that
            # is still the task's state (failing now) is alerted; older ones are history.
            self._failures_alerted[health.name] = health.last_failure_at or health.anchor
            if health.last_failure_at is None or health.consecutive_failures == 0:
                return []
            return alertstate.failures_after(session, health.name, None)
        if health.last_failure_at is None or health.last_failure_at <= known:
            return []
        return alertstate.failures_after(session, health.name, known)

    def send_due(self, now: dt.datetime, rounds: int = 50) -> int:
        """Send owed messages, a claimed batch at a time, while any is due; how many went."""
        sent = 0
        down: dict[str, str] = {}  # webhook variable -> why it failed in this round
        for _ in range(rounds):
            with scheduling.transaction(self.database) as session:
                targets = notify.read_targets(session)
                claimed = alertstate.claim(session, now, HOLD, CLAIM_BATCH)
            if not claimed:
                break
            for pending in claimed:
                sent += self._send(pending, targets, down, now)
        return sent

    def _send(
        self,
        pending: alertstate.Pending,
        targets: Mapping[str, Mapping[str, Any]],
        down: dict[str, str],
        now: dt.datetime,
    ) -> int:
        target = targets.get(pending.owner)
        variable = str(target["webhook_url_env"]) if target else ""
        try:
            if target is None:
                raise SendFailed(f"no notify target for owner {pending.owner!r} in the defaults")
            if variable in down:
                # Failed already in this round: the others wait, untried, without a hang each.
                self._failed(pending, down[variable], now, attempted=False)
                return 0
            url = checked_url(variable, self.environ.get(variable))
            self.poster(url, body(pending, str(target.get("format") or "json")))
        except SendFailed as exc:
            where = variable or f"owner {pending.owner}"
            reason = f"{where}: {exc}"
            if variable:
                down[variable] = reason
            if where not in self.stats.failing:  # once per outage, not per alert
                log.warning("beat: alerts not sent, retrying with backoff: %s", reason)
            self.stats.failing.add(where)
            self._failed(pending, reason, now, attempted=True)
            return 0
        if variable in self.stats.failing:
            log.warning("beat: alerts sent again to %s", variable)
            self.stats.failing.discard(variable)
        with scheduling.transaction(self.database) as session:
            alertstate.sent(session, pending, self.clock())
        self.stats.sent += 1
        return 1

    def _failed(
        self, pending: alertstate.Pending, reason: str, now: dt.datetime, *, attempted: bool
    ) -> None:
        self.stats.failed += attempted
        retry_at = now + backoff(pending.attempts if attempted else 0)
        try:
            with scheduling.transaction(self.database) as session:
                alertstate.failed(session, pending, reason, retry_at, attempted=attempted)
        except DatabaseUnavailable as exc:
            # The claim lapses and the alert is tried again then: nothing is lost.
            log.info("beat: alert %d's failed send not recorded: %s", pending.id, exc)
