"""The HTTP application: ``create_app`` wires the routes, access, errors and the page.

``reconcile serve`` runs it on uvicorn; tests call it in-process. It is read-only: a
middleware answers every method but GET and HEAD with 405 before any route runs.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.errors import DatabaseUnavailable
from reconciler.settings import Settings, resolve_repository_url
from reconciler.store import stall
from reconciler.store.database import Database
from reconciler.store.deadlines import SERVE
from reconciler.store.reads.cursors import BadParameter
from reconciler.store.reads.reader import Reader, for_reading
from reconciler.web import live, metrics, models
from reconciler.web.auth import Principal, principal
from reconciler.web.guard import Guard, HostRule
from reconciler.web.outage import Outage, OutageLog
from reconciler.web.routes import HEAD, router
from reconciler.web.timeline import router as timeline_router
from reconciler.web.tokens import TokenSet

STATIC = Path(__file__).parent / "static"
# Pages and single executions are read on the event loop without blocking it (psycopg's
# asynchronous connections; see ``Reader``), at most READ_CONNECTIONS at once per process.
# The other routes, and every read on SQLite, block, so they run in worker threads: at
# most READ_THREADS at once. Python runs one thread at a time, so more threads only add
# switching and database sessions competing for the same cores; two let a slow query
# not hold up the next request. Either way /healthz answers whatever the database does.
READ_CONNECTIONS = 4
READ_THREADS = 2
STOP_GRACE = 0.5
"""Seconds requests in flight keep their database waits after SIGTERM."""
READ_ONLY = (
    "This endpoint is read-only. Tasks are changed in the task files: commit the YAML to "
    "git and let `reconcile` apply it; run a task now with `reconcile trigger NAME`."
)


class ReadOnly:
    """405 for every method but GET and HEAD; HEAD runs GET and drops the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":

            async def send_head(message: Message) -> None:
                if message["type"] != "http.response.body":
                    await send(message)
                elif not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

            await self.app({**scope, "method": "GET", HEAD: True}, receive, send_head)
            return
        response = JSONResponse(
            {"detail": READ_ONLY}, status_code=405, headers={"Allow": "GET, HEAD"}
        )
        await response(scope, receive, send)


def _package_version() -> str:
    try:
        return version("celery-reconciler")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def _problem(parameter: str, message: str, errors: list[Any]) -> JSONResponse:
    return JSONResponse(
        {"detail": jsonable_encoder(errors), "message": f"{parameter}: {message}"}, status_code=422
    )


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("query", "?"), "msg": "invalid"}
    loc = [str(part) for part in first.get("loc", ())]
    parameter = loc[1] if len(loc) > 1 else (loc[0] if loc else "request")
    return _problem(parameter, str(first.get("msg", "invalid")), errors)


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadParameter)
    error = {"loc": ["query", exc.parameter], "msg": exc.detail, "type": "value_error"}
    return _problem(exc.parameter, exc.detail, [error])


async def _unavailable(request: Request, exc: Exception) -> Response:
    outage: Outage = request.app.state.outage
    outage.failed(str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=503)


def _stop_without_waiting(first: Callable[[], object]) -> None:
    """Wrap the server's stop handlers so that a stop first runs ``first`` (it answers the
    clients waiting on the live channel) and ends the database waits of requests in
    flight (after ``STOP_GRACE``): they answer 503 and the server stops within a second
    or two even while the database does not answer (docs/deadlines.md)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's; in-process tests run the app elsewhere
    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(number)
        if callable(handler):
            signal.signal(number, _after(first, stall.stopping(handler, STOP_GRACE)))


def _after(first: Callable[[], object], handler: stall.SignalHandler) -> stall.SignalHandler:
    def stop(signum: int, frame: FrameType | None) -> None:
        first()
        handler(signum, frame)

    return stop


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    to_thread.current_default_thread_limiter().total_tokens = READ_THREADS
    changes: live.Watcher = api.state.changes
    loop = asyncio.get_running_loop()
    _stop_without_waiting(lambda: loop.call_soon_threadsafe(changes.stop))
    reader: Reader = api.state.reader
    await reader.open()
    try:
        yield
    finally:
        await changes.close()
        await reader.close()
        api.state.database.dispose()


def create_app(
    source: Settings | Database,
    *,
    tokens: TokenSet | None = None,
    app_path: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The read-only API and page over ``source`` (settings: the database is opened here).

    ``tokens``: without them every caller sees everything, so ``reconcile serve`` then
    listens on loopback only. ``app_path``: the Celery app for ``/api/v1/tasks/registered``
    (default: the settings' app). ``allowed_hosts``: answer only requests whose Host is a
    loopback name or one of these (``reconciler.web.guard``); None answers any Host.
    """
    if isinstance(source, Settings):
        migrated = Database.open(source.database_url, deadlines=SERVE)
        database = for_reading(migrated)
        migrated.dispose()
        app_path = app_path or source.app
    else:
        database = for_reading(source)
        app_path = app_path or Settings.resolve().app
    api = FastAPI(
        title="celery-reconciler",
        version=_package_version(),
        description="Read-only history of the tasks that `reconcile` manages. "
        "Changes are made in the task files (git) and with `reconcile trigger`.",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    api.state.database = database
    api.state.reader = Reader(
        database.engine, connections=READ_CONNECTIONS, deadlines=database.deadlines
    )
    api.state.tokens = tokens
    api.state.app_path = app_path
    api.state.registered = {}
    api.state.repository_url = resolve_repository_url()
    api.state.outage = Outage()
    # Versions keyed by the tokens' digests: the same in every worker, guessed by no one.
    key = b"".join(token.digest for token in tokens.tokens) if tokens else b""
    api.state.changes = live.Watcher(api.state.reader, key=key)
    api.add_middleware(OutageLog, outage=api.state.outage)
    api.add_middleware(ReadOnly)
    hosts = None if allowed_hosts is None else HostRule(allowed_hosts)
    api.add_middleware(Guard, hosts=hosts)  # added last: the outermost, before ReadOnly
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(BadParameter, _bad_parameter)
    api.add_exception_handler(DatabaseUnavailable, _unavailable)
    api.include_router(router)
    api.include_router(timeline_router)
    api.include_router(live.router)

    @api.get("/healthz", response_model=models.Health, summary="Liveness (touches nothing)")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @api.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics",
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            401: {"model": models.Problem, "description": "No token, or an unknown one"},
            503: {"model": models.Problem, "description": "The database cannot be reached"},
        },
    )
    def prometheus(who: Principal = Depends(principal)) -> Response:
        return Response(metrics.render(database, who.owner), media_type=metrics.CONTENT_TYPE)

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    return api
