"""uvicorn's HTTP/1.1 protocol with Nagle's algorithm off, and keep-alive connections
that end after ``REQUESTS_PER_CONNECTION`` responses.

Nagle: with ``--workers`` uvicorn binds the listening socket itself
(``socket.socket(family)``, protocol number 0), and asyncio then leaves ``TCP_NODELAY``
unset on the accepted connections, since it sets it only on sockets that say
``IPPROTO_TCP``. A response written in two parts (head, then body) then waits for the
client's delayed ACK: about 40 ms on every keep-alive request. One process serving
through ``loop.create_server`` is not affected; setting the option here makes both the
same.

Connection lifetime: the worker processes share one listening socket, and whichever
wakes first accepts every connection waiting, so a burst of new connections (a client
opening its pool, a proxy after a restart) can all land on one process and stay there,
leaving the others idle for as long as the connections live. Ending each connection
after a number of responses (``Connection: close``, as nginx's ``keepalive_requests``
does) has clients reconnect now and then, and a process that is busy accepts later than
an idle one, so connections drift to the processes with time to serve them.

Slow clients: uvicorn ends a connection idle after a response (``timeout_keep_alive``),
but sets no deadline for a request's head: a client that opens a connection and sends
nothing, or sends its headers a byte at a time (slowloris), holds it open for ever.
Here the head of every request must arrive within ``header_timeout`` seconds of the
connection opening or of its first byte after a response; otherwise the connection gets
408 (or, if nothing came, is just closed). See docs/security.md, "Timeouts".
"""

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
