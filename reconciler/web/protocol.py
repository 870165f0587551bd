"""uvicorn's HTTP/1.1 protocol with Nagle's algorithm off, keep-alive connections that end
after ``REQUESTS_PER_CONNECTION`` responses (so connections drift to idle processes), and a
deadline for every request's head (docs/design/http-read-path.md, "Nagle" and
"Connection lifetime"; docs/security.md, "Timeouts")."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

REQUESTS_PER_CONNECTION = 25
CLOSE = (b"connection", b"close")
HEADER_TIMEOUT = 10.0  # seconds; ``reconcile serve --header-timeout``
_TOO_SLOW = b"the request's headers did not arrive in time\n"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_SLOW), _TOO_SLOW)
)


class ServerProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT  # set for the process by ``reconciler.web.server``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = 0
        self.head_started = False
        super().connection_made(transport)
        self.head_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self.head_too_slow
        )

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.head_started = True
            if self.head_deadline is None:  # the first byte after a response
                self.head_deadline = self.loop.call_later(self.header_timeout, self.head_too_slow)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:  # a request has begun
            self.stop_head_deadline()
            self.requests += 1
            if self.requests >= REQUESTS_PER_CONNECTION:
                self.cycle.default_headers = [*self.cycle.default_headers, CLOSE]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_deadline()
        super().connection_lost(exc)

    def stop_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None
        self.head_started = False

    def head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        if self.head_started:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
