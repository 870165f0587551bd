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
    active: dict[str, str | None] | None = Field(
        default=None, description="The 'active' window ({from, until}) when the task has one"
    )
    in_window: bool = Field(
        default=True, description="False while the 'active' window has not begun or is over"
    )


class Source(BaseModel):
    path: str
    line: int
    commit: str | None = Field(
        default=None, description="The git commit the task files were last applied from"
    )
    commit_url: str | None = Field(
        default=None, description="That commit under RECONCILER_REPOSITORY_URL, when set"
    )
    url: str | None = Field(
        default=None, description="The task's file and line at that commit, when set"
    )


class TaskDetail(TaskItem):  # type: ignore[no-redef]  # a field named kwargs
    definition: dict[str, Any] = Field(description="The normalised task definition")
    args: list[Any] = Field(default_factory=list, description="Redacted as in 'definition'")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Values of secret-looking keys are '***'"
    )
    options: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    overlap: str = "allow"
    catchup: str = "skip"
    next_fires: list[str] = Field(
        default_factory=list,
        description="The next five fire times (UTC) as beat computes them; none when "
        "disabled, deleted or nothing is left to fire",
    )
    source: Source
    created_at: str
    updated_at: str
    version: int
    content_hash: str
    schedule_anchor: str | None
    last_finished_at: str | None
    skipped_count: int = Field(description="Slots skipped by 'overlap: skip'")
    missed_count: int
    calendar_skipped_count: int = Field(
        description="Slots the task's calendars dropped (skip_on, only_on), by design"
    )
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


class SyncStatus(BaseModel):
    state: Literal["in_sync", "out_of_sync", "never_applied"]
    line: str = Field(description="The sync status as 'reconcile status' prints it")
    outcome: Outcome | None = Field(description="The latest attempt's outcome")
    error_count: int
    git_commit: str | None = Field(description="The latest attempt's commit")
    since: str | None
    last_attempt_at: str | None
    last_applied_at: str | None
    last_applied_commit: str | None


class Overview(BaseModel):
    """What the page's header shows: sync, processes and tasks by last status."""

    sync: SyncStatus
    beats_alive: int = Field(description="Beats whose heartbeat is fresh")
    beats: int = Field(description="Beats with a heartbeat row")
    workers_seen: list[str] = Field(
        description="Workers that ran executions queued in the last 10 minutes"
    )
    tasks: int = Field(description="Live tasks visible to this token")
    disabled: int
    by_last_status: dict[str, int] = Field(
        description="Live tasks by last status; 'never' for tasks never run"
    )
    repository_url: str | None = Field(description="RECONCILER_REPOSITORY_URL, when set")


class Registered(BaseModel):
    app: str
    items: list[str]
    next_cursor: str | None = None


class Changes(BaseModel):
    version: str = Field(description="Give it back as `since` to wait for the next change")
    changed: list[Literal["tasks", "executions", "applies"]] = Field(
        description="What changed since `since` (all of them without it); empty: nothing "
        "within `wait`"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    """Every error body: ``detail`` says what is wrong and, where it helps, what to do."""

    detail: Any
    message: str | None = None
