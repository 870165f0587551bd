"""The ``reconcile watch`` daemon: apply at start, on file changes, and on every resync.

A loop around ``reconciler.apply.apply_loaded``: file events (watchfiles, debounced)
and the resync interval wake it; an invalid state is reported once and skipped (and
recorded in the apply log, a repeat folded into one row); a
database that is away is retried with capped exponential backoff; ``--git-pull``
fast-forwards the checkout. A heartbeat with the state of the pulls is written every
10 s under the loop's stable name (``reconciler.store.heartbeats``), for ``doctor`` and
``/metrics``. It never exits on its own; ``stop()`` ends it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from reconciler.apply import (
    ApplyResult,
    MassDeleteRefused,
    apply_loaded,
    check_loaded,
    record_failed_attempt,
)
from reconciler.core.redact import redact_url_credentials
from reconciler.errors import DatabaseUnavailable, ReconcilerError, StateRefused
from reconciler.files.loader import LoadResult, load_directory
from reconciler.settings import process_name
from reconciler.store import heartbeats, stall
from reconciler.store.database import Database
from reconciler.store.deadlines import WATCH

log = logging.getLogger("reconciler.watch")

FIRST_BACKOFF = 0.5
HEARTBEAT_EVERY = 10.0
"""Seconds between the loop's heartbeats (doctor: ``heartbeats.WATCH_ALIVE_WITHIN``)."""
NAME_SETTLE = dt.timedelta(seconds=30)
"""How long the heartbeat holding this loop's name must stand still before it is taken
over (its loop was killed); one that moves is another running loop."""
LAST_WORDS = 0.5
"""Seconds a stopping loop gives the removal of its heartbeat, even after SIGTERM."""
# How many changed names one log line lists before it says "and N more".
NAMES_SHOWN = 5


@dataclass
class WatchOptions:
    tasks_dir: Path
    database_url: str
    resync_interval: float = 60.0
    debounce_ms: int = 300
    git_pull: float | None = None
    lock_timeout: float = 30.0
    allow_mass_delete: bool = False
    max_backoff: float = 30.0
    name: str | None = None
    """The stable name of its heartbeat; None: ``RECONCILER_WATCH_NAME``, else the host."""


@dataclass
class PullState:
    """What the heartbeat says of ``--git-pull``: the commit the checkout is at, and the
    pulls that failed since one last worked (with the latest reason, redacted)."""

    every: float | None
    commit: str | None = None
    last_at: dt.datetime | None = None
    failures: int = 0
    failing_since: dt.datetime | None = None
    error: str | None = None

    def values(self) -> dict[str, object]:
        return {
            "git_pull_every": self.every,
            "git_commit": self.commit,
            "last_pull_at": self.last_at,
            "pull_failures": self.failures,
            "pull_failing_since": self.failing_since,
            "pull_error": self.error,
        }

    def failed(self, reason: str, now: dt.datetime) -> None:
        self.last_at = now
        self.failures += 1
        self.failing_since = self.failing_since or now
        self.error = reason[:500]

    def worked(self, commit: str | None, now: dt.datetime) -> None:
        self.last_at, self.commit = now, commit
        self.failures, self.failing_since, self.error = 0, None, None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Trouble:
    """The last problem reported, so each is logged once per change of state."""

    message: str | None = None

    def report(self, message: str, level: int = logging.ERROR) -> None:
        if message != self.message:
            log.log(level, message)
            self.message = message

    def clear(self, recovered: str | None = None) -> None:
        if self.message is not None and recovered:
            log.info(recovered)
        self.message = None


@dataclass
class Watcher:
    options: WatchOptions
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = _utcnow
    """The heartbeat's clock (injected by tests)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _files_changed: bool = True
    _db: Database | None = None
    _backoff: float = 0.0
    _database: _Trouble = field(default_factory=_Trouble)
    _invalid: _Trouble = field(default_factory=_Trouble)
    _refused: _Trouble = field(default_factory=_Trouble)
    _git: _Trouble = field(default_factory=_Trouble)
    # The desired state the database refused; not tried again until the files change.
    _refused_state: frozenset[tuple[str, str, str, int]] | None = None
    _heartbeat: _Trouble = field(default_factory=_Trouble)
    cycles: int = 0

    def __post_init__(self) -> None:
        hostname, pid = socket.gethostname(), os.getpid()
        self.naming = heartbeats.Naming(
            heartbeats.WATCHES,
            self.options.name or process_name("RECONCILER_WATCH_NAME"),
            f"{hostname}:{pid}:{uuid.uuid4().hex[:8]}",
            hostname,
            pid,
            self.wall(),
            settle=NAME_SETTLE,
            stale=heartbeats.WATCH_ALIVE_WITHIN,
        )
        self.pulls = PullState(self.options.git_pull)

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler); the current apply finishes."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        options = self.options
        watcher = threading.Thread(target=self._watch_files, name="watch-files", daemon=True)
        watcher.start()
        log.info(
            "watching %s (resync every %gs%s)",
            options.tasks_dir,
            options.resync_interval,
            f", git pull every {options.git_pull:g}s" if options.git_pull else "",
        )
        now = self.clock()
        next_resync = next_heartbeat = now
        next_pull = now + options.git_pull if options.git_pull else float("inf")
        retry_at = float("inf")
        if options.git_pull:
            self.pulls.commit = _git_head(self._checkout())
        try:
            while not self._stop.is_set():
                now = self.clock()
                if now >= next_pull:
                    self.pull()
                    next_pull = now + (options.git_pull or 0)
                    next_heartbeat = now  # say at once how the pull went
                if self._files_changed or now >= next_resync or now >= retry_at:
                    self._files_changed = False
                    self._wake.clear()
                    ok = self.cycle()
                    now = self.clock()
                    next_resync = now + options.resync_interval
                    retry_at = float("inf") if ok else now + self._backoff
                if self.clock() >= next_heartbeat and not self._stop.is_set():
                    self.heartbeat()
                    next_heartbeat = self.clock() + HEARTBEAT_EVERY
                if not self._files_changed:
                    deadline = min(next_resync, next_pull, retry_at, next_heartbeat)
                    self._wake.wait(max(0.0, deadline - self.clock()))
        finally:
            self._stop.set()
            self._leave()
            if self._db is not None:
                self._db.dispose()
            watcher.join(timeout=2)
            log.info("stopped")

    # --- one cycle ----------------------------------------------------------------------

    def cycle(self) -> bool:
        """Load and apply once; False when it should be retried with backoff."""
        options = self.options
        started = time.perf_counter()
        try:
            loaded = load_directory(options.tasks_dir)
        except Exception as exc:  # a loader bug must not stop the daemon (or `up`)
            self._invalid.report(
                f"reading the task files failed, last good state kept: {type(exc).__name__}: {exc}"
            )
            return True
        try:
            check_loaded(loaded, options.tasks_dir, options.allow_mass_delete)
        except MassDeleteRefused as exc:
            self._refused.report(f"not applied: {exc}")
            self._record(exc, started)
            return True
        except ReconcilerError as exc:
            details = "\n".join(f"  {d}" for d in loaded.errors)
            self._invalid.report(f"invalid task files, last good state kept: {exc}\n{details}")
            self._record(exc, started)
            return True
        self._invalid.clear("task files are valid again")
        if self._refused_state is not None and self._refused_state == _state_of(loaded):
            return True
        self._refused_state = None
        try:
            if self._db is None:
                self._db = Database.open(options.database_url, deadlines=WATCH)
            result = apply_loaded(
                self._db,
                loaded,
                options.tasks_dir,
                allow_mass_delete=options.allow_mass_delete,
                lock_timeout=options.lock_timeout,
                started=started,
            )
        except DatabaseUnavailable as exc:
            if self._stop.is_set():
                return False  # ended by the stop (docs/deadlines.md), not an outage to report
            self._backoff = _next_backoff(self._backoff, options.max_backoff)
            self._database.report(f"database unavailable, retrying with backoff: {exc}")
            return False
        except MassDeleteRefused as exc:
            self._refused.report(f"not applied: {exc}")
            return True
        except StateRefused as exc:
            # The same files would be refused again: wait for them to change.
            self._refused_state = _state_of(loaded)
            self._refused.report(f"not applied, waiting for a change of the task files: {exc}")
            return True
        except ReconcilerError as exc:
            self._backoff = _next_backoff(self._backoff, options.max_backoff)
            self._refused.report(f"not applied, retrying: {exc}")
            return False
        except Exception as exc:
            self._backoff = _next_backoff(self._backoff, options.max_backoff)
            self._refused.report(f"apply failed, retrying: {type(exc).__name__}: {exc}")
            return False
        self._backoff = 0.0
        self._database.clear("database is reachable again")
        self._refused.clear()
        self.cycles += 1
        log.info(cycle_line(result))
        return True

    def _record(self, error: ReconcilerError, started: float) -> None:
        """Record files refused before apply (apply records its own failures); a database
        that is away cannot take it, and the next attempt is recorded instead."""
        try:
            if self._db is None:
                self._db = Database.open(self.options.database_url, deadlines=WATCH)
        except ReconcilerError:
            return
        record_failed_attempt(self._db, self.options.tasks_dir, error, started=started)

    # --- heartbeat ----------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Write this loop's heartbeat and the state of its pulls. A database that is away
        is reported by the apply cycle; the next heartbeat tries again."""
        values = {"tasks_dir": str(self.options.tasks_dir.absolute())}
        try:
            if self._db is None:
                self._db = Database.open(self.options.database_url, deadlines=WATCH)
            heartbeats.write(self._db, self.naming, self.wall(), {**values, **self.pulls.values()})
        except ReconcilerError as exc:
            log.debug("heartbeat not written: %s", exc)
            return
        except Exception as exc:  # a heartbeat must never stop the loop
            self._heartbeat.report(f"heartbeat not written: {type(exc).__name__}: {exc}")
            return
        self._heartbeat.clear()

    def _leave(self) -> None:
        """Remove the heartbeat: the loop stops (docs/plan-and-apply.md, "The watch loop")."""
        if self._db is None or self.naming.name is None:
            return
        try:
            with stall.last_words(LAST_WORDS):
                heartbeats.leave(self._db, self.naming)
        except Exception as exc:
            log.warning("heartbeat not removed: %s", exc)

    # --- git ----------------------------------------------------------------------------

    def _checkout(self) -> Path:
        directory = self.options.tasks_dir
        return directory if directory.is_dir() else directory.parent

    def pull(self) -> None:
        """``git pull --ff-only`` in the checkout holding the tasks directory."""
        cwd = self._checkout()
        try:
            before = _git_head(cwd)
            done = subprocess.run(
                ["git", "pull", "--ff-only", "--quiet"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._pull_failed(str(exc))
            return
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            self._pull_failed(lines[-1] if lines else f"exit code {done.returncode}")
            return
        self._git.clear("git pull works again")
        after = _git_head(cwd)
        self.pulls.worked(after, self.wall())
        if after != before:
            log.info("git pull: %s -> %s", (before or "none")[:12], (after or "none")[:12])
            self._files_changed = True

    def _pull_failed(self, reason: str) -> None:
        reason = redact_url_credentials(reason)
        self.pulls.failed(reason, self.wall())
        self._git.report(f"git pull failed: {reason}")

    # --- file events --------------------------------------------------------------------

    def _watch_files(self) -> None:
        directory = self.options.tasks_dir
        while not self._stop.is_set():
            if not directory.is_dir():
                self._stop.wait(1.0)
                continue
            try:
                for _changes in watchfiles.watch(
                    directory,
                    debounce=self.options.debounce_ms,
                    step=50,
                    stop_event=self._stop,
                    rust_timeout=1000,
                    raise_interrupt=False,
                ):
                    self._files_changed = True
                    self._wake.set()
            except (OSError, RuntimeError) as exc:
                log.debug("file watching restarts: %s", exc)
                self._stop.wait(1.0)


def cycle_line(result: ApplyResult) -> str:
    plan = result.plan
    took = f"in {result.seconds:.2f}s"
    if not plan:
        return f"no changes, {plan.unchanged} unchanged, {took}"
    parts = []
    for verb, changes in (
        ("created", plan.creates),
        ("updated", plan.updates),
        ("renamed", plan.renames),
        ("deleted", plan.deletes),
    ):
        if changes:
            names = ", ".join(c.name for c in changes[:NAMES_SHOWN])
            more = f" and {len(changes) - NAMES_SHOWN} more" if len(changes) > NAMES_SHOWN else ""
            parts.append(f"{len(changes)} {verb} ({names}{more})")
    return f"applied: {'; '.join(parts)}; {plan.unchanged} unchanged, {took}"


def _state_of(loaded: LoadResult) -> frozenset[tuple[str, str, str, int]]:
    """What an apply of ``loaded`` would write: each task's spec and source."""
    return frozenset(
        (task.spec.name, task.spec.content_hash, task.path, task.line) for task in loaded.tasks
    )


def _next_backoff(current: float, cap: float) -> float:
    return min(cap, current * 2 if current else FIRST_BACKOFF)


def _git_head(cwd: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None
