"""A TCP proxy for fault tests: it can stall one direction, both, or a connection after
a given request is seen, and it can cut every connection.

A stalled direction is not read from, so the sender's bytes wait in the kernel's
buffers and the receiver hears nothing: the connection stays open, as behind a gray
network failure, instead of being refused or reset. ``up`` is client to server,
``down`` server to client.

    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql+psycopg://root@127.0.0.1:{proxy.port}/test"
        proxy.pause("down")          # every connection, and new ones
        proxy.resume()
        proxy.pause_after(b"FOR UPDATE SKIP LOCKED", "down")  # that connection only
        proxy.cut()                  # reset every open connection
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import make_url

Direction = Literal["up", "down", "both"]


def through(url: str, proxy: FaultProxy) -> str:
    """The database ``url`` with the proxy's port: its connections go through the proxy."""
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


_POLL = 0.05


def _directions(direction: Direction) -> tuple[str, ...]:
    return ("up", "down") if direction == "both" else (direction,)


@dataclass
class _Trigger:
    pattern: bytes
    directions: tuple[str, ...]
    fired: threading.Event = field(default_factory=threading.Event)


class _Link:
    """One client connection and its server connection, with a pump per direction."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.paused: set[str] = set()
        self.closed = threading.Event()
        self._tail = b""

    def start(self) -> None:
        for direction, source, sink in (
            ("up", self.client, self.server),
            ("down", self.server, self.client),
        ):
            threading.Thread(target=self._pump, args=(direction, source, sink), daemon=True).start()

    def _stalled(self, direction: str) -> bool:
        return direction in self.paused or direction in self.proxy.paused

    def _pump(self, direction: str, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                if self._stalled(direction):
                    time.sleep(_POLL)
                    continue
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable or self._stalled(direction):
                    continue
                data = source.recv(65536)
                if not data:
                    break
                if direction == "up":
                    # Stalls armed by this request take effect before it is forwarded,
                    # so not even the first byte of the answer gets through.
                    self.proxy._count(data)
                    self._watch(data)
                sink.sendall(data)
        except OSError:
            pass
        self.close()

    def _watch(self, data: bytes) -> None:
        seen = self._tail + data
        fresh = len(self._tail)  # a match must end in ``data``: the tail was seen already
        self._tail = seen[-4096:]
        for trigger in self.proxy._take_triggers(seen, fresh):
            self.paused.update(trigger.directions)
            trigger.fired.set()

    def close(self, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``target_port`` until stopped."""

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self.paused: set[str] = set()
        self.bytes_up = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._triggers: list[_Trigger] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            link = _Link(self, client, server)
            with self._lock:
                self._links = [item for item in self._links if not item.closed.is_set()]
                self._links.append(link)
            link.start()

    # --- faults ----------------------------------------------------------------------

    def pause(self, direction: Direction = "both") -> None:
        """Stop forwarding ``direction`` on every connection, present and future."""
        self.paused.update(_directions(direction))

    def resume(self) -> None:
        """Forward everything again (global pauses and per-connection ones)."""
        self.paused.clear()
        with self._lock:
            for link in self._links:
                link.paused.clear()

    def pause_after(self, pattern: bytes, direction: Direction = "down") -> threading.Event:
        """Once a client sends ``pattern``, stall ``direction`` of that connection only.

        The request itself is forwarded first, so the server acts on it; the returned
        event is set when it happened.
        """
        trigger = _Trigger(pattern, _directions(direction))
        with self._lock:
            self._triggers.append(trigger)
        return trigger.fired

    def cut(self) -> None:
        """Reset every open connection (new ones are still accepted)."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close(reset=True)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    # --- observation -----------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    def wait_for_traffic(self, baseline: int, timeout: float) -> bool:
        """Wait until more than ``baseline`` bytes went client to server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.bytes_up > baseline:
                return True
            time.sleep(_POLL)
        return False

    def _count(self, data: bytes) -> None:
        self.bytes_up += len(data)

    def _take_triggers(self, seen: bytes, fresh: int = 0) -> Iterator[_Trigger]:
        """The armed triggers whose pattern ends at or after ``seen[fresh]``."""
        with self._lock:
            matched = [
                t
                for t in self._triggers
                if seen.find(t.pattern, max(0, fresh - len(t.pattern) + 1)) >= 0
            ]
            self._triggers = [t for t in self._triggers if t not in matched]
        yield from matched
