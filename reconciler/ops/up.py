"""``reconcile up``: the watch loop, Beat, a worker and the HTTP endpoint as child processes.

``plan_children`` says what to run (pure: settings in, argv lists out); ``Supervisor``
runs them with shared settings in the environment, prefixes each line of their output
with the child's name, stops them all on SIGINT/SIGTERM, and stops everything (exit 1)
when one of them dies on its own. The children end with it however it ends
(``reconciler.ops.lifeline``). ``Checkpoints`` keeps the write-ahead logs of the embedded
SQLite files from growing. Used by ``reconciler.cli.up``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from reconciler.ops.lifeline import END, lifeline_argv, watchdog_argv
from reconciler.settings import Settings
from reconciler.store.database import checkpoint_sqlite

STOP_TIMEOUT = 20.0
"""Seconds children get to stop after SIGTERM (a worker finishes its running tasks)."""

COLOURS = ("36", "35", "33", "32", "34", "31")

CHECKPOINT_EVERY = 60.0
"""Seconds between two checkpoints of the embedded SQLite files' write-ahead logs."""
CHECKPOINT_WAIT = 1.0
"""Seconds a checkpoint waits for readers and writers (writers wait behind it meanwhile)."""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = 2
    serve: bool = True
    resync_interval: float = 60.0
    loglevel: str = "INFO"
    watch_args: tuple[str, ...] = ()


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every child shares: the resolved settings, unbuffered output."""
    env = dict(os.environ if base is None else base)
    env.update(
        RECONCILER_TASKS_DIR=str(settings.tasks_dir),
        RECONCILER_DATABASE_URL=settings.database_url,
        RECONCILER_BROKER_URL=settings.broker_url,
        RECONCILER_APP=settings.app,
        PYTHONUNBUFFERED="1",
    )
    return env


def plan_children(settings: Settings, options: UpOptions) -> list[ChildSpec]:
    """What ``up`` runs, in start order; every child reads the settings from its env."""
    python = sys.executable
    level = options.loglevel
    celery = [python, "-m", "celery", "-A", settings.app]
    children = [
        ChildSpec(
            "watch",
            [python, "-m", "reconciler", "watch",
             "--resync-interval", str(options.resync_interval), *options.watch_args],
        ),
        ChildSpec(
            "beat",
            [*celery, "beat", "--scheduler", "reconciler.beat:DatabaseScheduler",
             "--loglevel", level],
        ),
        ChildSpec(
            "worker",
            [*celery, "worker", "--loglevel", level, "--concurrency", str(options.concurrency),
             "--hostname", "up@%h", "--without-gossip", "--without-mingle"],
        ),
    ]  # fmt: skip
    if options.serve:
        children.append(
            ChildSpec(
                "serve",
                [python, "-m", "reconciler", "serve",
                 "--host", options.host, "--port", str(options.port)],
            )
        )  # fmt: skip
    return children


def port_taken(host: str, port: int) -> bool:
    """Is ``host:port`` already bound by another process? (Port 0 never is.)

    Binds as uvicorn does (``SO_REUSEADDR``), so a port left in TIME_WAIT is free.
    """
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # serve reports a bad address itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


_SQLITE_PREFIXES = ("sqlite:///", "sqla+sqlite:///", "sqlalchemy+sqlite:///")


def sqlite_files(settings: Settings) -> list[Path]:
    """The SQLite files among the settings' database and broker URLs (the embedded state)."""
    files = []
    for url in (settings.database_url, settings.broker_url):
        for prefix in _SQLITE_PREFIXES:
            if url.startswith(prefix):
                path = url[len(prefix) :].split("?", 1)[0]
                if path not in ("", ":memory:"):
                    files.append(Path(path))
    return files


def unwritable_state(files: Sequence[Path]) -> str | None:
    """Why one of the SQLite ``files`` (or its directory) cannot be written, else None."""
    for path in files:
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # A real write: os.access() answers for permissions, not for a read-only
            # mount or a full disk.
            with tempfile.TemporaryFile(dir=directory, prefix=".probe-") as probe:
                probe.write(b"\0")
                probe.flush()
                os.fsync(probe.fileno())
            if path.exists() and not os.access(path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as exc:
            shown = path if path.exists() else directory
            return f"{shown} cannot be written ({exc.strerror or exc})"
    return None


class Checkpoints:
    """Cuts the write-ahead logs of the embedded SQLite files every ``every`` seconds, on
    a thread of ``up``'s own (docs/demo.md): the processes reading the state file all the
    time could otherwise keep SQLite from ever restarting the log. A failure is reported
    once, through ``say``, and tried again at the next round."""

    def __init__(
        self, files: Sequence[Path], say: Callable[[str], None], every: float = CHECKPOINT_EVERY
    ) -> None:
        self.files = list(files)
        self.say = say
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="up-checkpoints", daemon=True)
        self._failing: dict[Path, str] = {}

    def start(self) -> None:
        if self.files:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(CHECKPOINT_WAIT + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.round()

    def round(self) -> None:
        for path in self.files:
            try:
                checkpoint_sqlite(path, CHECKPOINT_WAIT)
            except sqlite3.Error as exc:
                if self._failing.get(path) != str(exc):
                    self.say(f"checkpoint of {path} failed ({exc}); trying again in "
                             f"{self.every:g} s")  # fmt: skip
                self._failing[path] = str(exc)
            else:
                if self._failing.pop(path, None) is not None:
                    self.say(f"checkpoint of {path} works again")


@dataclass
class Running:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    pump: threading.Thread
    last_lines: list[str] = field(default_factory=list)


class Supervisor:
    """Runs children until asked to stop or until one of them dies."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        env: dict[str, str],
        out: IO[str] | None = None,
        *,
        colour: bool | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        notes: Sequence[str] = (),
        state_files: Sequence[Path] = (),
    ) -> None:
        self.specs = list(children)
        self.checkpoints = Checkpoints(state_files, lambda line: self.say("up", line))
        self.notes = list(notes)
        self.env = env
        self.out = out or sys.stdout
        self.colour = self.out.isatty() if colour is None else colour
        self.stop_timeout = stop_timeout
        self.running: list[Running] = []
        self.watchdog: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._width = max((len(spec.name) for spec in self.specs), default=0)
        self.stop_reason = ""

    # --- output -------------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:<{self._width}} |"
        if self.colour:
            index = [spec.name for spec in self.specs].index(name) if name != "up" else -1
            code = COLOURS[index % len(COLOURS)] if index >= 0 else "1"
            prefix = f"\x1b[{code}m{prefix}\x1b[0m"
        with self._write_lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def _pump(self, running: Running) -> None:
        stream = running.process.stdout
        assert stream is not None
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            running.last_lines = [*running.last_lines[-19:], line]
            self.say(running.spec.name, line)
        stream.close()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        # Call from the main thread: Linux sends the parent-death signal when the
        # *thread* that started a child ends, not the process.
        me = os.getpid()
        self.watchdog = subprocess.Popen(
            watchdog_argv(me, self.stop_timeout),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        for spec in self.specs:
            process = subprocess.Popen(
                lifeline_argv(me, spec.argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                # Its own process group: a terminal's Ctrl-C reaches only us, and we stop
                # the children in order and wait for them.
                start_new_session=True,
            )
            running = Running(spec, process, threading.Thread(target=lambda: None))
            running.pump = threading.Thread(
                target=self._pump, args=(running,), name=f"up-{spec.name}", daemon=True
            )
            running.pump.start()
            self.running.append(running)
            self._tell_watchdog(str(process.pid))
            self.say("up", f"started {spec.name} (pid {process.pid}): {' '.join(spec.argv)}")
        for note in self.notes:
            self.say("up", note)
        self.checkpoints.start()

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def wait(self, poll: float = 0.2) -> Running | None:
        """Block until a stop is requested (None) or a child exits on its own (that child)."""
        while not self._stop.wait(poll):
            for running in self.running:
                if running.process.poll() is not None:
                    return running
        return None

    def stop(self) -> None:
        """SIGTERM every child still running, wait, then SIGKILL what is left."""
        self.checkpoints.stop()
        alive = [r for r in self.running if r.process.poll() is None]
        for running in alive:
            # The child itself, not its group: a Celery worker stops its own pool
            # processes after they finish their tasks.
            with contextlib.suppress(ProcessLookupError):
                os.kill(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for running in alive:
            try:
                running.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("up", f"{running.spec.name} did not stop in {self.stop_timeout:.0f} s; "
                               f"killing it")  # fmt: skip
                self._signal(running, signal.SIGKILL)
                running.process.wait()
        for running in self.running:
            running.pump.join(5)
        self._release_watchdog()

    def _tell_watchdog(self, line: str) -> None:
        if self.watchdog is not None and self.watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                self.watchdog.stdin.write(f"{line}\n")
                self.watchdog.stdin.flush()

    def _release_watchdog(self) -> None:
        """Every child is stopped: the watchdog may go without doing anything."""
        if self.watchdog is None:
            return
        self._tell_watchdog(END)
        with contextlib.suppress(OSError):
            if self.watchdog.stdin is not None:
                self.watchdog.stdin.close()
        try:
            self.watchdog.wait(5)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
            self.watchdog.wait()

    @staticmethod
    def _signal(running: Running, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.process.pid, signum)

    def run(self, install_signals: Callable[[Supervisor], None] | None = None) -> int:
        """Start, wait, stop; 0 after a requested stop, 1 when a child died on its own."""
        (install_signals or install_signal_handlers)(self)
        try:
            self.start()
            died = self.wait()
        except BaseException:
            self.stop()
            raise
        if died is None:
            self.say("up", f"{self.stop_reason}: stopping {', '.join(self._alive_names())}")
            self.stop()
            self.say("up", "stopped")
            return 0
        code = died.process.returncode
        self.say("up", f"{died.spec.name} exited unexpectedly (exit code {code}); "
                       f"stopping the others")  # fmt: skip
        self.stop()
        return 1

    def _alive_names(self) -> list[str]:
        return [r.spec.name for r in self.running if r.process.poll() is None] or ["nothing"]


def install_signal_handlers(supervisor: Supervisor) -> None:
    def handler(signum: int, _frame: object) -> None:
        supervisor.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
