"""``GET /api/v1/timeline``: the slots of the next hours and the starts of the last ones,
counted per time bucket (docs/http-api.md, docs/page.md "Pictures").

The next slots come from ``reconciler.core.timeline`` (the schedule's own computation,
once per distinct schedule); the last hours' starts are counted by the database. Both
are owner-scoped like every route. The answer is kept per process for ``CACHE_SECONDS``
(longer when it took long) per owner, window and bucket: the page asks on every change,
and a fleet of 10,000 tasks can take seconds to count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from reconciler.core.timeline import (
    SlotBucket,
    SlotCounts,
    bucket_start,
    count_slots,
    schedules_of,
)
from reconciler.core.times import iso
from reconciler.store.database import Database
from reconciler.store.reads.reader import ReadSession, read
from reconciler.store.reads.timeline import StartBucket, scheduled_tasks, start_buckets
from reconciler.web.auth import Principal, principal
from reconciler.web.body import JSONBody
from reconciler.web.models import Problem

CACHE_SECONDS = 30
SETTLE = dt.timedelta(minutes=10)
RECOUNT = dt.timedelta(hours=1)
MAX_HOURS = 48
_CACHE_SIZE = 32

Clock = Callable[[], dt.datetime]


class TopTask(BaseModel):
    name: str
    slots: int


class NextBucket(BaseModel):
    at: str = Field(description="The bucket's start (ISO 8601, UTC)")
    slots: int
    tasks: int = Field(description="How many tasks have a slot in it")
    top: list[TopTask] = Field(description="The tasks with the most slots in it, at most 3")


class LastBucket(BaseModel):
    at: str = Field(description="The bucket's start (ISO 8601, UTC)")
    expected: int = Field(description="Slots in it by today's schedules")
    planned: int = Field(description="Executions beat wrote for slots in it (scheduled_for)")
    started: int = Field(description="Of those, how many started")
    start_late_avg_ms: float | None = Field(description="Mean of started_at - scheduled_for")
    start_late_max_ms: float | None
    queue_late_max_ms: float | None = Field(description="Largest queued_at - scheduled_for")


class NextWindow(BaseModel):
    from_: str = Field(alias="from")
    until: str
    slots: int
    buckets: list[NextBucket] = Field(description="Buckets with no slot are left out")


class LastWindow(BaseModel):
    from_: str = Field(alias="from")
    until: str
    expected: int
    planned: int
    started: int
    buckets: list[LastBucket] = Field(description="Buckets with nothing are left out")


class Timeline(BaseModel):
    now: str
    hours: int
    bucket_seconds: int
    tasks: int = Field(description="Enabled tasks with a next slot, as this token sees them")
    unreadable: int = Field(description="Tasks whose stored definition could not be read")
    next: NextWindow
    last: LastWindow


router = APIRouter(
    prefix="/api/v1",
    responses={
        401: {"model": Problem, "description": "No token, or a token not in the tokens file"},
        422: {"model": Problem, "description": "A parameter is wrong; the message names it"},
        503: {"model": Problem, "description": "The database cannot be reached"},
    },
)


class _Cache:
    """Answers by (owner, hours, bucket), each kept ``CACHE_SECONDS`` or ten times as long
    as it took to count, whichever is longer (so counting takes at most a tenth of a
    core). One is counted at a time, in a worker thread: requests arriving meanwhile wait
    without holding a thread, and the other routes keep the rest."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.answers: dict[tuple[Any, ...], tuple[dt.datetime, float, dict[str, Any]]] = {}

    def _fresh(self, key: tuple[Any, ...], now: dt.datetime) -> dict[str, Any] | None:
        kept = self.answers.get(key)
        if kept is None:
            return None
        then, keep, answer = kept
        return answer if then <= now and (now - then).total_seconds() < keep else None

    async def get(
        self, key: tuple[Any, ...], now: dt.datetime, compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        answer = self._fresh(key, now)
        if answer is not None:
            return answer
        async with self.lock:
            answer = self._fresh(key, now)
            if answer is None:
                started = time.perf_counter()
                answer = await to_thread.run_sync(compute)
                keep = max(CACHE_SECONDS, 10 * (time.perf_counter() - started))
                if len(self.answers) >= _CACHE_SIZE:
                    self.answers.clear()
                self.answers[key] = (now, keep, answer)
            return answer


@dataclass
class _Settled:
    """One owner's and bucket size's counted buckets that are settled: older than
    ``SETTLE``, when the executions of their slots have been written and have started."""

    since: dt.datetime  # the first bucket counted
    until: dt.datetime  # the first bucket not settled
    counted_at: dt.datetime  # when all of them were last counted
    buckets: dict[dt.datetime, StartBucket]


class _Starts:
    """The last hours' starts, counted again only where they still change: the settled
    buckets are kept, and each answer counts the rows since (a fleet firing every minute
    writes 14 million rows a day; the last ``SETTLE`` of them are 100,000). All of them
    are counted again every ``RECOUNT``, so a start later than ``SETTLE`` shows by then."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str | None, int], _Settled] = {}

    def count(
        self,
        session: ReadSession,
        owner: str | None,
        since: dt.datetime,
        now: dt.datetime,
        size: dt.timedelta,
    ) -> list[StartBucket]:
        """The buckets from ``since`` (a bucket's start) to ``now`` that have rows."""
        key = (owner, int(size.total_seconds()))
        kept = self.kept.get(key)
        if (
            kept is None
            or not kept.since <= since <= kept.until
            or not kept.counted_at <= now < kept.counted_at + RECOUNT
        ):
            kept = _Settled(since, since, now, {})  # count them all
        recent = start_buckets(session, kept.until, now, size, owner)
        found = {**kept.buckets, **{each.start: each for each in recent}}
        # kept for the longest window asked, then dropped
        first = max(kept.since, bucket_start(now - dt.timedelta(hours=MAX_HOURS), size))
        until = max(bucket_start(now - SETTLE, size), kept.until)
        settled = {at: each for at, each in found.items() if first <= at < until}
        self.kept[key] = _Settled(first, until, kept.counted_at, settled)
        return [found[at] for at in sorted(found) if at >= since]


def _cache(request: Request) -> _Cache:
    state = request.app.state
    cache: _Cache | None = getattr(state, "timeline_cache", None)
    if cache is None:  # on the event loop: no other request runs in between
        cache = state.timeline_cache = _Cache()
        state.timeline_starts = _Starts()
    return cache


def _now(request: Request) -> dt.datetime:
    """The current time; a test sets ``app.state.clock``."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else dt.datetime.now(dt.UTC)


@router.get(
    "/timeline",
    response_model=Timeline,
    summary="Slots of the next hours and starts of the last ones, per time bucket",
)
async def timeline(
    request: Request,
    hours: int = Query(24, ge=1, le=MAX_HOURS, description="Hours each way from now"),
    bucket: int = Query(300, ge=60, le=3600, multiple_of=60, description="Bucket size in seconds"),
    who: Principal = Depends(principal),
) -> Response:
    """``next``: each bucket's slots, how many tasks they are and the tasks with the
    most; ``last``: each bucket's slots by today's schedules, the executions beat wrote
    for them, how many started and how late. Kept a while per process (``_Cache``)."""
    now = _now(request)
    database: Database = request.app.state.database
    cache = _cache(request)
    starts: _Starts = request.app.state.timeline_starts
    answer = await cache.get(
        (who.owner, hours, bucket),
        now,
        lambda: _compute(database, starts, who.owner, now, hours, bucket),
    )
    return JSONBody(answer)


def _compute(
    database: Database,
    starts: _Starts,
    owner: str | None,
    now: dt.datetime,
    hours: int,
    bucket: int,
) -> dict[str, Any]:
    """The answer; it runs in one worker thread at a time (``_Cache``), which ``starts``
    relies on."""
    size = dt.timedelta(seconds=bucket)
    span = dt.timedelta(hours=hours)
    since = bucket_start(now - span, size)

    def work(session: ReadSession) -> tuple[list[Any], list[StartBucket]]:
        tasks = scheduled_tasks(session, owner)
        return tasks, starts.count(session, owner, since, now, size)

    tasks, counted = read(database, work)
    schedules = schedules_of(tasks)
    coming = count_slots(schedules.groups, now, now + span, size)
    past = count_slots(schedules.groups, since - dt.timedelta(microseconds=1), now, size)
    return {
        "now": iso(now),
        "hours": hours,
        "bucket_seconds": bucket,
        "tasks": len(tasks) - len(schedules.unreadable),
        "unreadable": len(schedules.unreadable),
        "next": {
            "from": iso(now),
            "until": iso(now + span),
            "slots": coming.slots,
            "buckets": [_next_bucket(each) for each in coming.buckets],
        },
        "last": _last(since, now, past, counted),
    }


def _next_bucket(bucket: SlotBucket) -> dict[str, Any]:
    return {
        "at": iso(bucket.start),
        "slots": bucket.slots,
        "tasks": bucket.tasks,
        "top": [{"name": name, "slots": slots} for name, slots in bucket.top],
    }


def _last(
    since: dt.datetime, now: dt.datetime, past: SlotCounts, starts: list[StartBucket]
) -> dict[str, Any]:
    expected = {each.start: each.slots for each in past.buckets}
    started = {each.start: each for each in starts}
    buckets = []
    for at in sorted(expected.keys() | started.keys()):
        row = started.get(at)
        buckets.append(
            {
                "at": iso(at),
                "expected": expected.get(at, 0),
                "planned": row.planned if row else 0,
                "started": row.started if row else 0,
                "start_late_avg_ms": row.start_late_avg_ms if row else None,
                "start_late_max_ms": row.start_late_max_ms if row else None,
                "queue_late_max_ms": row.queue_late_max_ms if row else None,
            }
        )
    return {
        "from": iso(since),
        "until": iso(now),
        "expected": past.slots,
        "planned": sum(each.planned for each in starts),
        "started": sum(each.started for each in starts),
        "buckets": buckets,
    }
