"""The response bodies of the HTTP API, as pydantic models for the OpenAPI document.

Handlers build plain dicts (the same objects ``reconcile history --format json`` prints)
and return them directly; these models describe them, and the schemathesis test holds
the two together.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from reconciler.vocabulary import Outcome, Status, TaskType


class Execution(BaseModel):  # type: ignore[no-redef]  # a field named kwargs
    id: int
    task: str
    celery_task_id: str
    trigger: str = Field(description="schedule, manual or external")
    scheduled_for: str | None = Field(description="The slot fired for (ISO 8601, UTC)")
    status: Status
    args: list[Any]
    kwargs: dict[str, Any] = Field(description="Values of secret-looking keys are '***'")
    queued_at: str
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    worker: str | None
    result: Any = Field(description="The result as JSON (its repr when it is not JSON)")
    error: str | None
    traceback: str | None
    retries: int


class TaskItem(BaseModel):
    name: str
    description: str
    owner: str
    type: TaskType
    task: str = Field(description="The Celery task it runs")
    enabled: bool
    schedule: str | None = Field(description="The schedule in words, as the CLI shows it")
    timezone: str | None
    next_run: str | None = Field(description="The next slot, UTC; null when none is left")
    last_run: str | None = Field(description="Queue time of the latest execution")
    last_status: Status | None
    last_execution_id: int | None
    deleted_at: str | None
    last_success_at: str | None = Field(description="When the newest success finished")
    last_failure_at: str | None = Field(description="When the newest failure finished")
    consecutive_failures: int = Field(
        description="Failures that finished after the last success (retries and revokes "
        "do not count)"
    )


class Source(BaseModel):
    path: str
    line: int


class TaskDetail(TaskItem):
    definition: dict[str, Any] = Field(description="The normalised task definition")
    source: Source
    created_at: str
    updated_at: str
    version: int
    content_hash: str
    schedule_anchor: str | None
    last_finished_at: str | None
    skipped_count: int
    missed_count: int
    spread_offset: str | None = Field(
        default=None,
        description="With 'spread': this task's fixed offset (e.g. 2m23s) added to each slot",
    )


class TaskStatus(BaseModel):
    name: str
    enabled: bool
    deleted: bool
    last_status: Status | None
    last_run: str | None
    last_finished_at: str | None
    last_execution_id: int | None
    next_run: str | None
    last_success_at: str | None
    last_failure_at: str | None
    consecutive_failures: int


class StatsDay(BaseModel):
    day: str = Field(description="The UTC day the executions finished on")
    successes: int
    failures: int
    revoked: int
    duration_p50_ms: float | None = Field(description="Of the successes and failures")
    duration_p95_ms: float | None
    duration_max_ms: int | None


class TaskStats(BaseModel):
    name: str
    since: str
    successes: int
    failures: int
    revoked: int
    duration_max_ms: int | None
    days: list[StatsDay] = Field(description="Oldest first; days without executions left out")


class Apply(BaseModel):
    id: int
    applied_at: str
    created: int
    updated: int
    deleted: int
    unchanged: int
    created_names: list[str]
    updated_names: list[str]
    deleted_names: list[str]
    tasks_dir: str
    git_commit: str | None
    git_dirty: bool | None
    duration_ms: int
    outcome: Outcome
    error_count: int
    errors: list[str] = Field(description="The first 20 errors, located; empty for owner tokens")
    attempts: int = Field(description="How often this identical failure was attempted")
    last_attempt_at: str


class TaskPage(BaseModel):
    items: list[TaskItem]
    next_cursor: str | None


class ExecutionPage(BaseModel):
    items: list[Execution]
    next_cursor: str | None


class ApplyPage(BaseModel):
    items: list[Apply]
    next_cursor: str | None


class Registered(BaseModel):
    app: str
    items: list[str]
    next_cursor: str | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    """Every error body: ``detail`` says what is wrong and, where it helps, what to do."""

    detail: Any
    message: str | None = None
