"""When a task's owner wants to hear about it (``alerts:``) and where alerts go (``notify:``),
as task files and the defaults document write them (docs/task-files.md, "Alerts").

Pydantic models only. A task's stored spec carries its effective alerts (its own, else
the defaults'), so beat, the endpoint and ``reconcile alerts`` read them from the row.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from reconciler.core.durations import (
    DURATION_HINT,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)
from reconciler.core.secretref import ENV_NAME, ENV_NAME_HINT
from reconciler.core.values import FieldError, FileModel, check_key, check_text, describe_value

MAX_ALERT_DURATION = dt.timedelta(days=365)
MAX_FAILURES_IN_A_ROW = 1000
MAX_OWNER = 200  # the owner columns (String 200), as for a task's owner
MAX_VARIABLE = 200  # notify_targets.webhook_url_env


def _alert_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if not isinstance(value, str):
        # A bare number would leave the unit to guess: seconds, minutes?
        raise FieldError(f"expected a duration, got {describe_value(value)}", hint=DURATION_HINT)
    duration = parse_duration(value)
    if duration > MAX_ALERT_DURATION:
        raise FieldError(
            f"{value.strip()!r} is over the limit of 365d", hint="use a duration up to 365d"
        )
    return duration


AlertDuration = Annotated[
    dt.timedelta,
    BeforeValidator(_alert_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A duration written as text (``26h``), stored and shown as its canonical text."""

CONDITIONS = ("on_failure", "failures_in_a_row", "success_within", "max_duration", "missed")
"""The alert conditions, in the order they are listed and turned into rules."""


class Alerts(FileModel):
    """The conditions a task alerts on; none set means no alerts."""

    on_failure: StrictBool = False
    failures_in_a_row: Annotated[StrictInt, Field(ge=1, le=MAX_FAILURES_IN_A_ROW)] | None = None
    success_within: AlertDuration | None = None
    max_duration: AlertDuration | None = None
    missed: StrictBool = False

    @model_validator(mode="after")
    def _one_failure_rule(self) -> Alerts:
        if self.on_failure and self.failures_in_a_row is not None:
            raise FieldError(
                "on_failure alerts on every failure, so failures_in_a_row would never add one",
                loc=("failures_in_a_row",),
                hint="keep one: on_failure: true, or failures_in_a_row: N for N in a row",
            )
        return self

    @property
    def any(self) -> bool:
        """Whether any condition is set."""
        return bool(
            self.on_failure
            or self.failures_in_a_row is not None
            or self.success_within is not None
            or self.max_duration is not None
            or self.missed
        )


class NotifyTarget(FileModel):
    """Where one owner's alerts go: a webhook whose URL is read from the environment."""

    webhook_url_env: str
    format: Literal["json", "slack"] = "json"

    @field_validator("webhook_url_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not ENV_NAME.match(value):
            raise FieldError(
                f"must name an environment variable, got {value[:40]!r}",
                hint=f"use {ENV_NAME_HINT}, e.g. BILLING_ALERTS_URL (the URL stays out of git)",
            )
        if len(value) > MAX_VARIABLE:
            raise FieldError(
                f"is {len(value)} characters long, over the limit of {MAX_VARIABLE}",
                hint="use a shorter variable name",
            )
        return value


def check_notify_owners(value: dict[str, NotifyTarget]) -> dict[str, NotifyTarget]:
    """Owner keys are one-line text within the owner column's limit."""
    for owner in value:
        check_key(owner, ())
        check_text(owner, multiline=False, loc=(owner,))
        if not owner:
            raise FieldError("an owner must not be empty", hint="name the owner, e.g. billing")
        if len(owner) > MAX_OWNER:
            raise FieldError(
                f"owner {owner[:20]!r}... is {len(owner)} characters long, over the limit "
                f"of {MAX_OWNER}"
            )
    return value


def effective(own: Alerts | None, default: Alerts | None) -> Alerts | None:
    """A task's alerts: its own ``alerts:`` as a whole (``{}`` turns the defaults off),
    else the defaults'; None when no condition is set."""
    chosen = own if own is not None else default
    return chosen if chosen is not None and chosen.any else None
