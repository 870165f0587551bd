"""A client-side deadline for every PostgreSQL round trip, and stopping in spite of one.

psycopg waits for the server's answer without a time limit, and ``statement_timeout``
cannot help when the server's answer never arrives (a network that stalls instead of
refusing). So every wait of our connections is armed with a watchdog: when it outlives
its deadline, the watchdog shuts the connection's socket down; the blocked read then
sees the end of the stream, psycopg raises ``OperationalError`` and SQLAlchemy drops the
connection. The watchdog's thread shuts a socket only under the lock that disarming
takes, so never after its wait ended. See docs/deadlines.md.

``cut_off(grace)`` ends every wait, present and future, within ``grace`` seconds: a
process that was asked to stop does not wait for a database that does not answer.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn, TypeVar

import psycopg
from psycopg.abc import PQGen

from reconciler.store.deadlines import Deadlines

RV = TypeVar("RV")
POLL = 0.1
"""Seconds between the watchdog's looks at the waits in progress."""
_INTERVAL = 0.1  # psycopg's own: how often a blocked wait lets signal handlers run


class _Watchdog:
    """One daemon thread per process, started at the first wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, float, Watched]] = {}  # started, deadline
        self._thread: threading.Thread | None = None
        self.cutoff = math.inf  # monotonic time after which every wait is ended
        self.connect_cutoff = math.inf  # and after which no connection is opened
        self.ended_by_cutoff = False  # a wait was ended because the process stops

    def arm(self, connection: Watched, within: float | None = None) -> None:
        if self._thread is None:
            self._start()
        # No lock: one dict store is atomic; disarming takes the lock, so a socket is
        # never shut after its wait ended.
        limit = connection.deadline if within is None else within
        started = time.monotonic()
        self._armed[id(connection)] = (started, started + limit, connection)

    def disarm(self, connection: Watched) -> None:
        with self._lock:
            self._armed.pop(id(connection), None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reconciler-db-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(POLL)
            now = time.monotonic()
            with self._lock:
                for key, (started, deadline, connection) in list(self._armed.items()):
                    if now >= min(deadline, self.cutoff):
                        self.ended_by_cutoff = self.ended_by_cutoff or now >= self.cutoff
                        connection.stalled = now - started
                        _shut(connection.fileno())
                        del self._armed[key]

    def after_fork(self) -> None:
        """A forked child has no watchdog thread and none of its parent's waits."""
        self._lock = threading.Lock()
        self._armed = {}
        self._thread = None


def _shut(fd: int) -> None:
    """Shut the socket down (the descriptor stays open: psycopg still owns it)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()


WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=WATCHDOG.after_fork)
_waiting = threading.local()
_deferred: list[Callable[[], None]] = []


class NoAnswer(psycopg.OperationalError):
    """The database did not answer within the deadline (the watchdog ended the wait)."""


def _raise_no_answer(connection: Watched, exc: psycopg.Error) -> NoReturn:
    """Raise ``exc`` again; as ``NoAnswer`` when it is the watchdog that ended the wait."""
    if connection.stalled is None:
        raise exc
    raise NoAnswer(
        f"no answer from the database within {connection.stalled:.1f} s "
        f"({connection.role} deadlines: {connection.deadline:g} s per round trip)"
    ) from exc


class _Watched:
    """What the watchdog needs of a connection (set by ``connect``)."""

    deadline: float = math.inf
    role: str = "default"
    stalled: float | None = None  # seconds the wait had lasted when the watchdog ended it
    first: float | None = None  # a pooled connection's ping deadline (``ping_within``)


class WatchedConnection(_Watched, psycopg.Connection[Any]):
    """psycopg's connection, every wait armed with the watchdog."""

    def wait(self, gen: PQGen[RV], interval: float = _INTERVAL, timeout: float | None = None) -> RV:
        WATCHDOG.arm(self, self.first)
        _waiting.active = True
        try:
            return super().wait(gen, interval, timeout)
        except psycopg.Error as exc:
            _raise_no_answer(self, exc)
        finally:
            WATCHDOG.disarm(self)
            _waiting.active = False
            _run_deferred()


class WatchedAsyncConnection(_Watched, psycopg.AsyncConnection[Any]):
    """psycopg's asynchronous connection, every wait armed with the watchdog."""

    async def wait(
        self, gen: PQGen[RV], interval: float = _INTERVAL, timeout: float | None = None
    ) -> RV:
        WATCHDOG.arm(self)
        try:
            return await super().wait(gen, interval, timeout)
        except psycopg.Error as exc:
            _raise_no_answer(self, exc)
        finally:
            WATCHDOG.disarm(self)


Watched = WatchedConnection | WatchedAsyncConnection


def connect(deadlines: Deadlines, *args: Any, **kwargs: Any) -> WatchedConnection:
    """A watched connection; none is opened once the process was cut off."""
    _refuse_when_cut_off()
    _waiting.connecting = True
    try:
        connection = WatchedConnection.connect(*args, **kwargs)
    finally:
        _waiting.connecting = False
        _run_deferred()
    connection.deadline = deadlines.read
    connection.role = deadlines.role
    return connection


async def connect_async(deadlines: Deadlines, **kwargs: Any) -> WatchedAsyncConnection:
    _refuse_when_cut_off()
    connection = await WatchedAsyncConnection.connect(**kwargs)
    connection.deadline = deadlines.read
    connection.role = deadlines.role
    return connection


def _refuse_when_cut_off() -> None:
    if time.monotonic() >= min(WATCHDOG.cutoff, WATCHDOG.connect_cutoff):
        raise NoAnswer("not connecting to the database: the process is stopping")


def abandon_connect() -> None:
    """From a signal handler: if the main thread is opening a connection (which the
    watchdog cannot end: the connect timeout bounds it), give it up now."""
    if getattr(_waiting, "connecting", False):
        raise NoAnswer("connecting to the database given up: the process is stopping")


def parameters(deadlines: Deadlines, given: dict[str, Any]) -> dict[str, Any]:
    """libpq parameters for ``deadlines``'s role added to ``given`` (the URL's own): the
    connect timeout, TCP keepalives and user timeout, and the server-side timeouts as
    ``options``, before any the URL gives (a later ``-c`` wins)."""
    settings = " ".join(f"-c {name}={value}" for name, value in deadlines.server_settings().items())
    own: dict[str, Any] = {
        "connect_timeout": deadlines.connect,
        "keepalives": 1,
        "keepalives_idle": deadlines.keepalive_idle,
        "keepalives_interval": deadlines.keepalive_interval,
        "keepalives_count": deadlines.keepalive_count,
        "tcp_user_timeout": deadlines.tcp_user_timeout,
        "application_name": f"reconciler-{deadlines.role}",
    }
    merged = {**own, **given}
    merged["options"] = f"{settings} {given['options']}" if given.get("options") else settings
    return merged


def ping_within(dbapi_connection: Any, seconds: float | None) -> None:
    """Give the waits of ``dbapi_connection`` ``seconds`` instead of its deadline until
    called again with None: the pool's ping before a pooled connection is reused."""
    if isinstance(dbapi_connection, _Watched):
        dbapi_connection.first = seconds


def no_answer(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver error SQLAlchemy wraps in it) is a stall: trying
    again at once would only wait as long again."""
    return isinstance(getattr(exc, "orig", None) or exc, NoAnswer)


@contextlib.contextmanager
def extended(dbapi_connection: Any, seconds: float) -> Iterator[None]:
    """Allow the waits of ``dbapi_connection`` at least ``seconds`` in the block: a wait
    on a lock that may last longer than the role's deadline (``--lock-timeout``)."""
    if not isinstance(dbapi_connection, _Watched):
        yield
        return
    previous = dbapi_connection.deadline
    dbapi_connection.deadline = max(previous, seconds)
    try:
        yield
    finally:
        dbapi_connection.deadline = previous


def cut_off(grace: float) -> None:
    """End every database wait of this process, present and future, ``grace`` seconds from
    now at the latest. Safe in a signal handler (it only sets a number)."""
    WATCHDOG.cutoff = min(WATCHDOG.cutoff, time.monotonic() + grace)
    WATCHDOG.connect_cutoff = min(WATCHDOG.connect_cutoff, WATCHDOG.cutoff)


def reset_cut_off() -> None:
    WATCHDOG.cutoff = WATCHDOG.connect_cutoff = math.inf
    WATCHDOG.ended_by_cutoff = False


@contextlib.contextmanager
def last_words(seconds: float) -> Iterator[None]:
    """Give the block ``seconds`` of waits on the connections it has even if the process
    was cut off: a stopping process removes its heartbeat. No connection is opened (a
    connect cannot be ended early), and nothing is tried (``NoAnswer``) when the stop
    had to end a wait: the database was not answering. Not cut off, nothing changes."""
    if WATCHDOG.ended_by_cutoff:
        raise NoAnswer("the database did not answer when the process was asked to stop")
    previous = WATCHDOG.cutoff
    if previous != math.inf:
        WATCHDOG.cutoff = time.monotonic() + seconds
    try:
        yield
    finally:
        if previous != math.inf:
            WATCHDOG.cutoff = min(previous, WATCHDOG.cutoff)


SignalHandler = Callable[[int, FrameType | None], Any]


def stopping(handler: SignalHandler, grace: float = 0.0) -> SignalHandler:
    """A signal handler that cuts the database waits off and then runs ``handler``.

    If the main thread is inside a wait, ``handler`` runs as soon as that wait ends
    (within ``grace`` plus the watchdog's poll): raising from inside psycopg's wait
    (Celery Beat stops with ``SystemExit``) would make psycopg send the server a
    cancel request first, and wait up to 5 s for it, on a network that does not answer.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        cut_off(grace)
        if getattr(_waiting, "active", False) or getattr(_waiting, "connecting", False):
            _deferred.append(lambda: handler(signum, frame))
            abandon_connect()
        else:
            handler(signum, frame)

    return stop


def _run_deferred() -> None:
    if _deferred and threading.current_thread() is threading.main_thread():
        pending = list(_deferred)
        _deferred.clear()
        for run in pending:
            run()
