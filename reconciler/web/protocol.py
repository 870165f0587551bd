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
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

REQUESTS_PER_CONNECTION = 25
CLOSE = (b"connection", b"close")


class ServerProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = 0
        super().connection_made(transport)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:  # a request has begun
            self.requests += 1
            if self.requests >= REQUESTS_PER_CONNECTION:
                self.cycle.default_headers = [*self.cycle.default_headers, CLOSE]
