"""Reconciling: load the task files, plan against the database, guard, and apply.

``reconcile`` (the CLI's apply and dry-run) and the watch daemon call ``reconcile``
or ``apply_loaded``; the plan is computed inside the apply lock against the rows as
they are then, and written in the same transaction. An attempt that fails is recorded
in the apply log in a transaction of its own (``record_failed_attempt``). Also finds the
git commit of the tasks directory for the apply log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.diagnostics import Diagnostic
from reconciler.core.plan import Change, Plan, RenameRefused, make_plan, notify_changes
from reconciler.core.redact import redact_text
from reconciler.core.schedule import first_slot
from reconciler.errors import DatabaseUnavailable, ReconcilerError, StateRefused
from reconciler.files.loader import LoadResult, load_directory
from reconciler.store import attempts
from reconciler.store import tasks as store
from reconciler.store.database import (
    Database,
    first_line,
    refusal_as_error,
    refusal_message,
    unavailable_as_error,
)
from reconciler.vocabulary import Outcome

log = logging.getLogger("reconciler.apply")

RECORD_WAIT_MS = 2000
"""SQLite: how long recording a failed attempt waits for another writer's lock."""

Progress = Callable[[int], None]
ProgressFactory = Callable[[int], AbstractContextManager[Progress]]


class InvalidTasks(ReconcilerError):
    """The task files have errors; nothing was applied."""

    def __init__(self, tasks_dir: Path, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        count = len(diagnostics)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in {tasks_dir}; nothing applied "
            f"(fix them; 'reconcile validate' lists them too)"
        )


class MassDeleteRefused(ReconcilerError):
    """The plan would delete more than half (or all) of the tasks."""


@dataclass(frozen=True)
class GitInfo:
    commit: str | None = None
    dirty: bool | None = None


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    load: LoadResult
    applied: bool  # a transaction wrote the plan's changes
    record_id: int | None
    seconds: float


def reconcile(
    db: Database,
    tasks_dir: Path,
    *,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    lock_timeout: float = 30.0,
    now: dt.datetime | None = None,
    progress: ProgressFactory | None = None,
) -> ApplyResult:
    """Validate ``tasks_dir`` and apply it (or only plan it, with ``dry_run``)."""
    started = time.perf_counter()
    loaded = load_directory(tasks_dir)
    return apply_loaded(
        db,
        loaded,
        tasks_dir,
        dry_run=dry_run,
        allow_mass_delete=allow_mass_delete,
        lock_timeout=lock_timeout,
        now=now,
        progress=progress,
        started=started,
    )


def apply_loaded(
    db: Database,
    loaded: LoadResult,
    tasks_dir: Path,
    *,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
    lock_timeout: float = 30.0,
    now: dt.datetime | None = None,
    progress: ProgressFactory | None = None,
    started: float | None = None,
) -> ApplyResult:
    """Plan and apply an already loaded desired state (validation errors refuse it).

    Any failure but an unreachable database (which cannot take it) is recorded in the
    apply log before it is raised; a dry run records nothing."""
    started = time.perf_counter() if started is None else started
    try:
        return _apply_loaded(
            db,
            loaded,
            tasks_dir,
            dry_run=dry_run,
            allow_mass_delete=allow_mass_delete,
            lock_timeout=lock_timeout,
            now=now,
            progress=progress,
            started=started,
        )
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if not dry_run:
            record_failed_attempt(db, tasks_dir, exc, started=started, now=now)
        raise


def _apply_loaded(
    db: Database,
    loaded: LoadResult,
    tasks_dir: Path,
    *,
    dry_run: bool,
    allow_mass_delete: bool,
    lock_timeout: float,
    now: dt.datetime | None,
    progress: ProgressFactory | None,
    started: float,
) -> ApplyResult:
    check_loaded(loaded, tasks_dir, allow_mass_delete)
    with unavailable_as_error(db.engine):
        # A read without the lock first: an unchanged state (the watch daemon's resync,
        # most of the time) neither waits for nor blocks anybody.
        latest: str | None = Outcome.APPLIED
        if dry_run and db.current_revision() is None:
            # A dry run against a database never migrated: plan against nothing, and
            # leave the database as it is.
            seen = store.StoredState(live=[])
        else:
            with db.session() as session:
                seen = store.read_current(session)
        plan = desired_plan(loaded, seen)
        if not plan and not dry_run:
            # A no-op is recorded only when it puts the files back in sync after a failed
            # attempt (docs/plan-and-apply.md, "Decisions"). Only a no-op asks, so a plan
            # with changes reads the log no earlier than it writes it.
            with db.session() as session:
                latest = attempts.latest_outcome(session)
        back_in_sync = latest not in (None, Outcome.APPLIED)
        if dry_run or not (plan or plan.relocations or back_in_sync):
            return ApplyResult(plan, loaded, False, None, time.perf_counter() - started)
        written = _Written(plan)
        moment = now or dt.datetime.now(dt.UTC)
        try:
            with refusal_as_error(written.names), db.session() as session:
                store.lock(session, lock_timeout)
                state = written.state = store.read_current(session)
                if (state.live, state.notify, state.deleted_names) != (
                    seen.live,
                    seen.notify,
                    seen.deleted_names,
                ):
                    # Someone applied in between: plan again against the rows as they are now.
                    plan = written.plan = desired_plan(loaded, state)
                guard(plan, tasks_dir, allow_mass_delete)
                log = None
                if plan or back_in_sync:
                    git = git_info(tasks_dir)
                    log = store.ApplyLog(
                        tasks_dir=str(tasks_dir),
                        git_commit=git.commit,
                        git_dirty=git.dirty,
                        duration_ms=int((time.perf_counter() - started) * 1000),
                    )
                with (progress or _no_progress)(len(plan.changes)) as step:
                    record_id = store.write_plan(
                        session,
                        plan,
                        state,
                        now=moment,
                        next_run=first_slot,
                        log=log,
                        progress=step,
                        record_no_op=back_in_sync,
                    )
        except StateRefused as exc:
            culprit = _culprit(db, written, moment) if len(written.names()) > 1 else None
            if culprit is None:
                raise
            raise StateRefused(refusal_message([culprit], exc.reason), exc.reason) from exc
    return ApplyResult(plan, loaded, bool(plan), record_id, time.perf_counter() - started)


@dataclass
class _Written:
    """The plan being written, so a refusal can name the tasks it writes."""

    plan: Plan
    state: store.StoredState | None = None

    def names(self) -> list[str]:
        return [change.name for change in self.plan.changes if change.spec is not None]


def _culprit(db: Database, written: _Written, moment: dt.datetime) -> str | None:
    """The task the database refuses, found by writing halves of the refused plan's
    creates and updates in transactions that are rolled back (a few, however many)."""
    state = written.state
    if state is None:
        return None
    plan = written.plan
    suspects = [*plan.creates, *plan.updates, *plan.renames]
    creates, renames = {id(c) for c in plan.creates}, {id(c) for c in plan.renames}

    def refused(changes: list[Change]) -> bool:
        trial = Plan(
            creates=tuple(c for c in changes if id(c) in creates),
            updates=tuple(c for c in changes if id(c) not in creates | renames),
            renames=tuple(c for c in changes if id(c) in renames),
        )
        session = db.sessions()
        try:
            with refusal_as_error(list):
                store.write_plan(session, trial, state, now=moment, next_run=first_slot, log=None)
        except StateRefused:
            return True
        finally:
            session.rollback()
            session.close()
        return False

    with unavailable_as_error(db.engine):
        while len(suspects) > 1:
            half = suspects[: len(suspects) // 2]
            suspects = half if refused(half) else suspects[len(half) :]
        return suspects[0].name if suspects and refused(suspects) else None


def record_failed_attempt(
    db: Database,
    tasks_dir: Path,
    error: BaseException,
    *,
    started: float | None = None,
    now: dt.datetime | None = None,
) -> int | None:
    """Record an attempt that applied nothing, in its own transaction; its row id, or
    None when the database could not take it (which is logged, never raised)."""
    outcome, errors = failure_of(error)
    git = git_info(tasks_dir)
    attempt = attempts.Attempt(
        outcome=outcome,
        errors=errors,
        tasks_dir=str(tasks_dir),
        git_commit=git.commit,
        git_dirty=git.dirty,
        duration_ms=int((time.perf_counter() - started) * 1000) if started is not None else 0,
    )
    try:
        with unavailable_as_error(db.engine), db.session() as session:
            if db.dialect == "sqlite":
                # Another writer may hold the lock (a lock timeout): wait only briefly.
                connection = session.connection()
                busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {RECORD_WAIT_MS}")
                try:
                    return attempts.record_failure(session, attempt, now or _utcnow())
                finally:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy or 0)}")
            return attempts.record_failure(session, attempt, now or _utcnow())
    except Exception as exc:
        log.warning("the failed apply could not be recorded in the apply log: %s", first_line(exc))
        return None


def failure_of(error: BaseException) -> tuple[Outcome, list[str]]:
    """An exception raised by an apply as the outcome and the located error lines the
    apply log keeps (redacted by the one policy, docs/security.md)."""
    if isinstance(error, InvalidTasks):
        return Outcome.INVALID, [redact_text(str(d)) for d in error.diagnostics]
    if isinstance(error, MassDeleteRefused | StateRefused | RenameRefused):
        return Outcome.REFUSED, [redact_text(str(error))]
    if isinstance(error, ReconcilerError):
        return Outcome.FAILED, [redact_text(str(error))]
    return Outcome.FAILED, [redact_text(f"{type(error).__name__}: {first_line(error)}")]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def desired_plan(loaded: LoadResult, state: store.StoredState) -> Plan:
    """The plan from ``state`` to the loaded files: the tasks, and the defaults' notify."""
    plan = make_plan(loaded.tasks, state.live, state.deleted_names)
    notify = notify_changes(loaded.notify, state.notify)
    return dataclasses.replace(plan, notify=notify) if notify else plan


def check_loaded(loaded: LoadResult, tasks_dir: Path, allow_mass_delete: bool) -> None:
    """Refuse invalid files, and a missing tasks directory unless mass deletes are allowed."""
    if loaded.missing_root:
        if allow_mass_delete:
            return
        raise MassDeleteRefused(
            f"the tasks directory {tasks_dir} does not exist, so every task would be deleted; "
            f"check --tasks-dir / RECONCILER_TASKS_DIR, or pass --allow-mass-delete"
        )
    if loaded.errors:
        raise InvalidTasks(tasks_dir, loaded.errors)


def guard(plan: Plan, tasks_dir: Path, allow_mass_delete: bool) -> None:
    """The mass-delete guard (docs/plan-and-apply.md, "What apply guarantees")."""
    if allow_mass_delete or not plan.is_mass_delete():
        return
    deletes, existing = len(plan.deletes), plan.existing
    share = "all" if deletes == existing else "more than half"
    raise MassDeleteRefused(
        f"the plan deletes {deletes} of {existing} tasks ({share} of them) from {tasks_dir}; "
        f"refusing. If that is intended, pass --allow-mass-delete"
    )


def git_info(path: Path) -> GitInfo:
    """HEAD of the git checkout holding ``path`` and whether ``path`` has local changes."""
    try:
        head = _git(path, "rev-parse", "HEAD")
        if head is None:
            return GitInfo()
        status = _git(path, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    except OSError:
        return GitInfo()
    return GitInfo(commit=head.strip() or None, dirty=bool(status and status.strip()))


def _git(path: Path, *args: str) -> str | None:
    if not path.is_dir():
        return None
    done = subprocess.run(
        ["git", *args], cwd=path, capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout if done.returncode == 0 else None


@contextmanager
def _no_progress(_total: int) -> Iterator[Progress]:
    yield lambda _count: None


__all__ = [
    "ApplyResult",
    "GitInfo",
    "InvalidTasks",
    "MassDeleteRefused",
    "apply_loaded",
    "check_loaded",
    "failure_of",
    "git_info",
    "guard",
    "reconcile",
    "record_failed_attempt",
]
