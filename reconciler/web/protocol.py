"""uvicorn's HTTP/1.1 protocol with Nagle's algorithm off on every connection.

With ``--workers`` uvicorn binds the listening socket itself (``socket.socket(family)``,
protocol number 0), and asyncio then leaves ``TCP_NODELAY`` unset on the accepted
connections, since it sets it only on sockets that say ``IPPROTO_TCP``. A response
written in two parts (head, then body) then waits for the client's delayed ACK: about
40 ms on every keep-alive request. One process serving through ``loop.create_server``
is not affected; setting the option here makes both the same.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
