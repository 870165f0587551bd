"""The Celery app of the delivery tests: each task notes each run of its body in Redis.

Run by ``celery -A tests.deliveryapp:app worker``; ``DELIVERY_BROKER_URL`` is the broker,
``DELIVERY_NOTES_URL`` the Redis database for the notes (the broker's by default), and
``DELIVERY_VISIBILITY_TIMEOUT`` how soon Redis hands an unacknowledged message out again.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from reconciler import tracking

RUNS = "deliveries:runs"
"""A Redis list: ``<celery task id>:<retries>`` for each run of a task body."""
HOLD = "deliveries:hold"
"""While this Redis key exists, ``deliveries.hold`` keeps running (at most 30 s)."""

app = Celery("deliveries", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("DELIVERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
if "DELIVERY_VISIBILITY_TIMEOUT" in os.environ:
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ["DELIVERY_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
tracking.install(app)

_redis: Any = None


def note(request: Any) -> None:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ.get("DELIVERY_NOTES_URL", app.conf.broker_url))
    _redis.rpush(RUNS, f"{request.id}:{request.retries or 0}")


@app.task(name="deliveries.count", bind=True)
def count(self: Any, seconds: float = 0.0) -> str:
    note(self.request)
    time.sleep(seconds)
    return "counted"


@app.task(name="deliveries.retry", bind=True, max_retries=5)
def retry(self: Any, times: int) -> int:
    note(self.request)
    if self.request.retries < times:
        raise self.retry(countdown=0)
    return int(self.request.retries)


@app.task(name="deliveries.hold", bind=True, acks_late=True)
def hold(self: Any) -> str:
    note(self.request)
    deadline = time.monotonic() + 30
    while _redis.exists(HOLD) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"
