"""The page's live channel, ``GET /api/v1/changes`` (docs/page.md, "Live").

One ``Watcher`` per server process reads the store's change marks (one indexed
statement, ``reconciler.store.reads.changes``) once a second while anyone follows, and
keeps a version per topic; every client is answered from that version in memory, so
clients cost the database nothing however many there are. A client gives back the
version it has (``since``) and waits up to ``wait`` seconds for it to move.

A version is a keyed digest of the marks, so every worker process of one server reaches
the same version for the same state without talking to the others; it says only that
something changed, never what or whose: the page then reads through the usual routes,
with the caller's token and its scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from reconciler.errors import DatabaseUnavailable
from reconciler.store.reads.changes import MARKS, Marks
from reconciler.store.reads.reader import Reader
from reconciler.web import models
from reconciler.web.auth import principal
from reconciler.web.body import JSONBody

log = logging.getLogger("uvicorn.error")

TOPICS = ("tasks", "executions", "applies")
INTERVAL = 1.0
"""Seconds between the watcher's reads while anyone follows."""
IDLE = 10.0
"""Seconds after the last question (with nobody waiting) the watcher stops reading."""
MAX_WAIT = 30
"""The longest ``wait`` a client may ask for: below the usual proxy read timeouts."""
_DIGITS = 10  # hex digits per topic in a version


class Stopping(Exception):
    """The server is stopping: waiting clients are answered at once."""


class Watcher:
    """The change marks of one process, read every ``interval`` seconds while clients
    follow; ``follow`` answers them. ``key`` keys the versions' digest, so a version
    does not give away the counts it is made of."""

    def __init__(
        self,
        reader: Reader,
        *,
        key: bytes = b"",
        interval: float = INTERVAL,
        idle: float = IDLE,
    ) -> None:
        self.reader = reader
        self.key = key
        self.interval = interval
        self.idle = idle
        self.version: str | None = None
        self.failure: str | None = None
        self._asked = 0.0  # monotonic time of the last question
        self._waiting = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._fresh = asyncio.Event()  # set once the running watcher has read
        self._news = asyncio.Event()  # set, and replaced, when anything changes

    # --- the clients' side ----------------------------------------------------------------

    async def follow(self, since: str | None, wait: float) -> str:
        """The version as soon as it differs from ``since`` (at once without it), else
        ``since`` after ``wait`` seconds. ``DatabaseUnavailable`` while the marks cannot
        be read, ``Stopping`` once the server stops."""
        self._on_this_loop()
        if self._stopping:
            raise Stopping
        self._waiting += 1
        try:
            self._asked = time.monotonic()
            deadline = self._asked + wait
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._watch())
            if not self._fresh.is_set():  # not read since it (re)started: read first
                await self._fresh.wait()
            while True:
                if self._stopping:
                    raise Stopping
                if self.failure is not None:
                    raise DatabaseUnavailable(self.failure)
                assert self.version is not None
                remaining = deadline - time.monotonic()
                if self.version != since or remaining <= 0:
                    return self.version
                news = self._news
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await news.wait()
        finally:
            self._waiting -= 1
            self._asked = time.monotonic()

    def stop(self) -> None:
        """Answer every waiting client now and read no more (the server stops)."""
        self._stopping = True
        if self._loop is not None:
            self._fresh.set()
            self._announce()
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self.stop()
        task = self._task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the watcher ----------------------------------------------------------------------

    def _on_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an app served by a new event loop: start afresh
            self._loop, self._task, self._stopping = loop, None, False
            self._fresh, self._news = asyncio.Event(), asyncio.Event()

    def _following(self) -> bool:
        return self._waiting > 0 or time.monotonic() - self._asked < self.idle

    async def _watch(self) -> None:
        try:
            while not self._stopping and self._following():
                await self._read()
                await asyncio.sleep(self.interval)
        finally:
            self._task = None
            self._fresh.clear()  # the next question waits for a fresh read

    async def _read(self) -> None:
        version, failure = self.version, None
        try:
            version = self.version_of(await self.reader.run_async(MARKS))
        except DatabaseUnavailable as exc:
            failure = str(exc)
        except Exception as exc:  # a bug or an unexpected database error: keep watching
            failure = f"cannot read the changes: {type(exc).__name__}: {exc}"
            if self.failure != failure:
                log.exception("the live channel's watcher failed")
        news = version != self.version or failure != self.failure
        self.version, self.failure = version, failure
        self._fresh.set()
        if news:
            self._announce()

    def _announce(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

    def version_of(self, marks: Marks) -> str:
        """One keyed digest per topic, joined by dots."""
        return ".".join(
            hmac.new(self.key, repr(part).encode(), hashlib.sha256).hexdigest()[:_DIGITS]
            for part in marks
        )


def changed(since: str | None, version: str) -> list[str]:
    """The topics whose part of ``version`` differs from ``since``'s: all of them when
    ``since`` is not given or is not a version."""
    if since is None:
        return list(TOPICS)
    before, now = since.split("."), version.split(".")
    if len(before) != len(now):
        return list(TOPICS)
    return [topic for topic, old, new in zip(TOPICS, before, now, strict=True) if old != new]


router = APIRouter(prefix="/api/v1")


@router.get(
    "/changes",
    response_model=models.Changes,
    summary="What changed since a version: the page's live channel",
    dependencies=[Depends(principal)],
    responses={
        401: {"model": models.Problem, "description": "No token, or an unknown one"},
        422: {"model": models.Problem, "description": "A parameter is wrong"},
        503: {
            "model": models.Problem,
            "description": "The database cannot be reached, or the server is stopping",
        },
    },
)
async def changes(
    request: Request,
    since: str | None = Query(
        None, max_length=200, description="The version last answered; omit it at first"
    ),
    wait: int = Query(
        0, ge=0, le=MAX_WAIT, description="Seconds to wait for a change before answering"
    ),
) -> Response:
    """Answered from memory, never from the database: the version now and what changed
    since ``since``; with ``wait``, held until something changes or ``wait`` seconds
    pass. Clients then read what changed through the other routes."""
    watcher: Watcher = request.app.state.changes
    try:
        version = await watcher.follow(since, wait)
    except Stopping:
        return JSONResponse(
            {"detail": "the server is stopping; try again in a moment"},
            status_code=503,
            headers={"Connection": "close", "Retry-After": "1"},
        )
    body = {"version": version, "changed": changed(since, version)}
    return JSONBody(body, headers={"Cache-Control": "no-store"})
