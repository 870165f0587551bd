"""The database as the endpoint's requests last found it: an outage is logged once.

While the database is away every request that needs it answers 503 (docs/deadlines.md);
the log says so at the first of them, and once more at the first answer after it.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The server's own log (uvicorn's configured error logger), where a reader looks first.
log = logging.getLogger("uvicorn.error")
# The routes that read the database: a 200 from one means it answers again.
READS = ("/api/", "/metrics")


class Outage:
    def __init__(self) -> None:
        self.down = False

    def failed(self, reason: str) -> None:
        if not self.down:
            self.down = True
            log.error("database unavailable, answering 503 until it answers: %s", reason)

    def answered(self) -> None:
        if self.down:
            self.down = False
            log.warning("database answers again")


class OutageLog:
    """Watches responses only while an outage is on, so it costs nothing otherwise."""

    def __init__(self, app: ASGIApp, outage: Outage) -> None:
        self.app = app
        self.outage = outage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outage = self.outage
        if not outage.down or scope["type"] != "http" or not scope["path"].startswith(READS):
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                outage.answered()
            await send(message)

        await self.app(scope, receive, watch)
