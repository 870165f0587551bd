"""The API's read paths (docs/http-api.md): tasks, their status and executions, the apply log.

Every route depends on ``principal``: an owner's token sees only its owner's tasks and
the executions that ran under its owner (even of a task that has since moved to another
owner), and anything else answers 404 exactly as if it did not exist (docs/http-api.md,
"Access"). Values are redacted by ``reconciler.core.redact`` (docs/security.md). Lists
are ``{"items": [...], "next_cursor": ...}``; task and execution lists also stream CSV.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from reconciler.core.retention import STATS_KEEP_DAYS
from reconciler.core.spec import NAME_PATTERN
from reconciler.errors import ConfigError
from reconciler.store import heartbeats
from reconciler.store.database import Database
from reconciler.store.health import recent_workers
from reconciler.store.reads.applies import list_applies, owned_names, sync_state
from reconciler.store.reads.detail import TaskSummary, get_task
from reconciler.store.reads.executions import (
    execution_page,
    execution_record,
    iter_execution_records,
)
from reconciler.store.reads.reader import Reader, ReadSession, read
from reconciler.store.reads.records import EXECUTION_KEYS, EXECUTION_TEXT_KEYS
from reconciler.store.reads.stats import daily_stats, stats_dict
from reconciler.store.reads.tasks import (
    NEVER_RUN,
    iter_tasks,
    status_counts,
    task_owner,
    task_page,
)
from reconciler.web import models
from reconciler.web.auth import Principal, principal
from reconciler.web.body import JSONBody, execution_item
from reconciler.web.csvexport import stream_csv, stream_records
from reconciler.web.params import (
    AllExecutionQuery,
    ApplyQuery,
    ExecutionQuery,
    Format,
    TaskQuery,
)
from reconciler.web.views import (
    TASK_CSV_COLUMNS,
    apply_item,
    task_detail,
    task_item,
    task_status,
)

HEAD = "reconciler.head"  # set in the ASGI scope by the read-only middleware for HEAD
MAX_ID = 2**63 - 1
_NAME = re.compile(NAME_PATTERN)
_T = TypeVar("_T")


_CSV = {"content": {"text/csv": {"schema": {"type": "string"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Problem, "description": "No token, or a token not in the tokens file"},
    404: {"model": models.Problem, "description": "No such thing visible to this token"},
    422: {"model": models.Problem, "description": "A parameter is wrong; the message names it"},
    503: {"model": models.Problem, "description": "The database cannot be reached"},
}

router = APIRouter(prefix="/api/v1", responses=_ERRORS)


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _read(request: Request, work: Callable[[ReadSession], _T]) -> _T:
    return read(_database(request), work)


def _reader(request: Request) -> Reader:
    """Pages and single executions: plain-row reads on the event loop (``Reader``)."""
    reader: Reader = request.app.state.reader
    return reader


def _task(request: Request, name: str, who: Principal) -> TaskSummary:
    """The task ``name`` as ``who`` may see it, or 404."""
    summary = None
    if _NAME.match(name):
        summary = _read(request, lambda session: get_task(session, name, owner=who.owner))
    if summary is None:
        raise _not_found(f"task {name!r}")
    return summary


def _json(value: Any) -> Response:
    return JSONBody(value)


def _not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def _wants_csv(request: Request, format: Format | None) -> bool:
    if format is not None:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "").lower()


def _csv(request: Request, chunks: Callable[[], Iterator[str]], filename: str) -> StreamingResponse:
    """Streams ``chunks()``; Starlette iterates it in a worker thread, where the export's
    reads block as they may."""
    head = bool(request.scope.get(HEAD))

    def generate() -> Iterator[str]:
        if not head:
            yield from chunks()

    return StreamingResponse(
        generate(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- tasks ------------------------------------------------------------------------------


@router.get(
    "/tasks/",
    response_model=models.TaskPage,
    responses={200: _CSV},
    summary="Tasks with last status and next run",
    openapi_extra=TaskQuery.openapi(),
)
async def tasks(request: Request, who: Principal = Depends(principal)) -> Response:
    query = TaskQuery.of(request)
    owner = query.owner
    if who.owner is not None:
        if owner is not None and owner != who.owner:  # nothing to show, in either format
            if _wants_csv(request, query.format):
                return _csv(request, lambda: stream_csv(TASK_CSV_COLUMNS, ()), "tasks.csv")
            return _json({"items": [], "next_cursor": None})
        owner = who.owner
    filters: dict[str, Any] = {
        "q": query.q,
        "owner": owner,
        "type": query.type,
        "enabled": query.enabled,
        "last_status": query.last_status,
        "label": query.label,
        "sort": query.sort,
        "viewer": who.owner,
    }
    reader = _reader(request)
    if _wants_csv(request, query.format):
        await reader.run_async(task_page(limit=1, **filters))  # bad filters: 422

        def chunks() -> Iterator[str]:
            rows = (task_item(row) for row in iter_tasks(reader, **filters))
            return stream_csv(TASK_CSV_COLUMNS, rows)

        return _csv(request, chunks, "tasks.csv")
    read = task_page(limit=query.limit, cursor=query.cursor, **filters)
    page, next_cursor = await reader.run_async(read)
    return _json({"items": [task_item(row) for row in page], "next_cursor": next_cursor})


@router.get("/tasks/registered", response_model=models.Registered, summary="Registered tasks")
def registered(request: Request, who: Principal = Depends(principal)) -> Response:
    """The task names the Celery app registers (its own, without ``celery.*``)."""
    from reconciler import celeryapp

    app_path: str = request.app.state.app_path
    cache: dict[str, list[str]] = request.app.state.registered
    if app_path not in cache:
        try:
            cache[app_path] = celeryapp.registered_task_names(celeryapp.load_app(app_path))
        except ConfigError as exc:
            return JSONResponse({"detail": f"cannot load the Celery app: {exc}"}, status_code=503)
        except Exception as exc:  # the user's module failed while importing
            detail = f"cannot load the Celery app {app_path!r}: {type(exc).__name__}: {exc}"
            return JSONResponse({"detail": detail}, status_code=503)
    return _json({"app": app_path, "items": cache[app_path], "next_cursor": None})


@router.get("/tasks/executions/{id}", response_model=models.Execution, summary="One execution")
async def execution(
    request: Request,
    id: int = Path(ge=1, le=MAX_ID),
    who: Principal = Depends(principal),
) -> Response:
    record = await _reader(request).run_async(execution_record(id, owner=who.owner))
    if record is None:
        raise _not_found(f"execution {id}")
    return _json(execution_item(record))


async def _visible_task(reader: Reader, name: str, who: Principal) -> None:
    """404 unless ``who`` may see the task now or has executions under its name (which
    an owner keeps reading after the task moved to another owner)."""
    owner = await reader.run_async(task_owner(name)) if _NAME.match(name) else None
    if owner is not None and who.may_see(owner):
        return
    if owner is not None and who.owner is not None:
        own, _ = await reader.run_async(execution_page(task=name, owner=who.owner, limit=1))
        if own:
            return
    raise _not_found(f"task {name!r}")


@router.get("/tasks/{name}", response_model=models.TaskDetail, summary="One task")
def task(request: Request, name: str, who: Principal = Depends(principal)) -> Response:
    """The definition, where it came from, and its schedule state. A task deleted from the
    files is still served, with ``deleted_at`` set and no next run."""
    summary = _task(request, name, who)
    sync = _read(request, sync_state)
    commit = sync.last_applied.git_commit if sync.last_applied is not None else None
    repository_url: str | None = getattr(request.app.state, "repository_url", None)
    return _json(task_detail(summary, commit=commit, repository_url=repository_url))


@router.get("/tasks/{name}/status", response_model=models.TaskStatus, summary="Task status")
def status(request: Request, name: str, who: Principal = Depends(principal)) -> Response:
    return _json(task_status(_task(request, name, who)))


@router.get("/tasks/{name}/stats", response_model=models.TaskStats, summary="Task statistics")
def stats(
    request: Request,
    name: str,
    days: int = Query(30, ge=1, le=STATS_KEEP_DAYS, description="How many days back"),
    who: Principal = Depends(principal),
) -> Response:
    """Per UTC day, the executions that finished by final status and the duration's p50,
    p95 and max; kept a year, whatever the history's retention."""
    _task(request, name, who)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days - 1)).date()
    found = _read(request, lambda session: daily_stats(session, name, since))
    return _json(stats_dict(name, found, since))


async def _executions(
    request: Request,
    who: Principal,
    query: ExecutionQuery,
    *,
    task: str | None,
    filename: str,
    visible: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """A page or the CSV of executions. ``visible`` raises 404 for a task the caller may
    not see: checked before a CSV streams, and for a page only when it is empty (a page
    with rows is already limited to the executions that ran under the caller's owner),
    which saves a query."""
    filters: dict[str, Any] = {
        "task": task,
        "status": query.status,
        "since": query.since,
        "until": query.until,
        "owner": who.owner,
    }
    reader = _reader(request)
    if _wants_csv(request, query.format):
        if visible is not None:
            await visible()

        def chunks() -> Iterator[str]:
            records = iter_execution_records(reader, **filters)
            return stream_records(EXECUTION_KEYS, records, text_columns=EXECUTION_TEXT_KEYS)

        return _csv(request, chunks, filename)
    read = execution_page(limit=query.limit, cursor=query.cursor, **filters)
    records, next_cursor = await reader.run_async(read)
    if not records and visible is not None:
        await visible()
    return _json({"items": [execution_item(r) for r in records], "next_cursor": next_cursor})


@router.get(
    "/tasks/{name}/executions",
    response_model=models.ExecutionPage,
    responses={200: _CSV},
    summary="A task's executions, newest first",
    openapi_extra=ExecutionQuery.openapi(),
)
async def task_executions(
    request: Request, name: str, who: Principal = Depends(principal)
) -> Response:
    """Also for a task deleted from the files: its history stays readable."""
    query = ExecutionQuery.of(request)
    if not _NAME.match(name):
        raise _not_found(f"task {name!r}")
    return await _executions(
        request,
        who,
        query,
        task=name,
        filename=f"{name}-executions.csv",
        visible=lambda: _visible_task(_reader(request), name, who),
    )


@router.get(
    "/executions",
    response_model=models.ExecutionPage,
    responses={200: _CSV},
    summary="All executions, newest first",
    openapi_extra=AllExecutionQuery.openapi(),
)
async def executions(request: Request, who: Principal = Depends(principal)) -> Response:
    query = AllExecutionQuery.of(request)
    return await _executions(request, who, query, task=query.task, filename="executions.csv")


# --- the overview -------------------------------------------------------------------------

WORKERS_SEEN_WITHIN = dt.timedelta(minutes=10)
"""Workers count as seen when they ran an execution queued this recently (as doctor)."""


@router.get("/overview", response_model=models.Overview, summary="Sync, beats, workers, counts")
def overview(request: Request, who: Principal = Depends(principal)) -> Response:
    """The page's header: the sync status and last apply, beats alive, workers seen and the
    live tasks by last status, for this token's owner only when it has one."""
    now = dt.datetime.now(dt.UTC)
    counts = _reader(request).run(status_counts(owner=who.owner, viewer=who.owner))

    def rest(session: ReadSession) -> tuple[dict[str, Any], list[Any], list[str]]:
        sync = sync_state(session).to_dict(now)
        sync.pop("errors")  # they may name any owner's files; the apply log has them
        since = now - WORKERS_SEEN_WITHIN
        return sync, heartbeats.beats(session), recent_workers(session, since, who.owner)

    sync, beats, workers = _read(request, rest)
    by_status: dict[str, int] = {}
    for status, _enabled, count in counts:
        key = status or NEVER_RUN
        by_status[key] = by_status.get(key, 0) + count
    return _json(
        {
            "sync": sync,
            "beats_alive": sum(beat.alive(now) for beat in beats),
            "beats": len(beats),
            "workers_seen": workers,
            "tasks": sum(count for _, _, count in counts),
            "disabled": sum(count for _, enabled, count in counts if not enabled),
            "by_last_status": by_status,
            "repository_url": getattr(request.app.state, "repository_url", None),
        }
    )


# --- the apply log ------------------------------------------------------------------------


@router.get(
    "/applies",
    response_model=models.ApplyPage,
    summary="The apply log: every attempt with its outcome, newest first",
    openapi_extra=ApplyQuery.openapi(),
)
def applies(request: Request, who: Principal = Depends(principal)) -> Response:
    """For an owner's token the name lists keep only that owner's tasks and the errors are
    left out; counts are whole."""
    query = ApplyQuery.of(request)
    limit, cursor = query.limit, query.cursor
    outcomes = query.outcomes

    def items(session: ReadSession) -> tuple[list[dict[str, Any]], str | None]:
        page, next_cursor = list_applies(session, limit=limit, cursor=cursor, outcomes=outcomes)
        visible: set[str] | None = None
        if who.owner is not None:
            names = [
                n
                for row in page
                for n in (*row.created_names, *row.updated_names, *row.deleted_names)
            ]
            visible = owned_names(session, who.owner, names)
        return [apply_item(row, visible) for row in page], next_cursor

    page, next_cursor = _read(request, items)
    return _json({"items": page, "next_cursor": next_cursor})
