"""Children that end with their parent, however the parent ends (``kill -9`` included).

``reconcile up`` starts each child as ``python -m reconciler.ops.lifeline exec PID -- ARGV``:
on Linux it asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``,
kept across exec), checks that the parent is still PID (it may have died in between),
then execs ARGV. A watchdog (``python -m reconciler.ops.lifeline watchdog PID GRACE``) reads
the children's process groups on stdin from the parent; end of input without the word
``end`` means the parent died: it sends SIGTERM where the kernel could not, waits up
to GRACE seconds, then SIGKILLs every group still alive (pool processes included).
See docs/deploy.md, "Process lifetime".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence

PR_SET_PDEATHSIG = 1
PARENT_DEATH_SIGNAL = signal.SIGTERM
END = "end"
"""The last line the parent sends when it stopped its children itself."""

POLL = 0.1


def parent_death_signal(signum: int = PARENT_DEATH_SIGNAL) -> bool:
    """Ask the kernel for ``signum`` when our parent dies; False where it cannot (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) == 0)


def lifeline_argv(parent: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it ends when process ``parent`` does."""
    return [sys.executable, "-m", "reconciler.ops.lifeline", "exec", str(parent), "--", *argv]


def watchdog_argv(parent: int, grace: float) -> list[str]:
    return [sys.executable, "-m", "reconciler.ops.lifeline", "watchdog", str(parent), f"{grace:g}"]


def exec_bound(parent: int, argv: Sequence[str]) -> None:
    """Arm the parent-death signal, make sure the parent is still there, exec ``argv``."""
    parent_death_signal()
    # The parent may have died before the signal was armed: then we were already
    # re-parented (to init or a subreaper) and must not start at all.
    if os.getppid() != parent:
        sys.exit(f"lifeline: parent {parent} is gone; not starting {argv[0]}")
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        sys.exit(f"lifeline: cannot run {argv[0]}: {exc.strerror or exc}")


def group_alive(pgid: int) -> bool:
    """Does a live (not zombie) process remain in group ``pgid``?"""
    if os.path.isdir("/proc/self"):
        # Orphans' zombies wait for init to reap them and still answer killpg(pgid, 0).
        return any(_proc_state(pid, pgid) for pid in os.listdir("/proc") if pid.isdigit())
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_state(pid: str, pgid: int) -> bool:
    """Is /proc's process ``pid`` a live member of group ``pgid``?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_orphans(groups: Iterable[int], grace: float, *, term: bool) -> list[int]:
    """SIGTERM each group's leader (when ``term``), wait ``grace`` s, SIGKILL the rest.

    The leader alone gets SIGTERM, as ``reconcile up`` does on a normal stop: a Celery
    worker then stops its own pool. Returns the groups that had to be killed.
    """
    pending = [pgid for pgid in dict.fromkeys(groups) if group_alive(pgid)]
    if term:
        for pgid in pending:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(POLL)
        pending = [pgid for pgid in pending if group_alive(pgid)]
    for pgid in pending:
        _signal_group(pgid, signal.SIGKILL)
    return pending


def watchdog(parent: int, grace: float) -> int:
    """Read process groups from stdin until it ends; stop them if the parent died."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # outlive the parent, whatever hit it
    groups: list[int] = []
    for line in sys.stdin:
        word = line.strip()
        if word == END:
            return 0
        if word.isdigit():
            groups.append(int(word))
    # The parent's end of the pipe closed without END: it died.
    killed = stop_orphans(groups, grace, term=not sys.platform.startswith("linux"))
    _say(f"process {parent} is gone; its children are stopped"
         + (f" ({len(killed)} killed after {grace:g} s)" if killed else ""))  # fmt: skip
    return 0


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"lifeline | {message}", file=sys.stderr, flush=True)


def main(args: Sequence[str]) -> int:
    if len(args) >= 4 and args[0] == "exec" and args[1].isdigit() and args[2] == "--":
        exec_bound(int(args[1]), args[3:])
    if len(args) == 3 and args[0] == "watchdog" and args[1].isdigit():
        return watchdog(int(args[1]), float(args[2]))
    print(
        "usage: python -m reconciler.ops.lifeline exec PID -- ARGV... | watchdog PID GRACE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
