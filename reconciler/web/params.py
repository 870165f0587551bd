"""The list routes' query parameters: one pydantic model per route, validated in one call.

A route's parameters are the fields of a model, checked by one ``model_validate`` of
the query string rather than FastAPI's per-parameter checks, which cost more than a
page's rows (docs/design/http-read-path.md); the model also writes them into the
OpenAPI document (``openapi``), so the schemathesis run and clients see one contract.

Errors are FastAPI's own: a ``RequestValidationError`` located at ``("query", name)``,
answered as 422 naming the parameter like every other bad parameter. As with FastAPI, the
last of repeated parameters counts and unknown ones are ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from reconciler.store.reads.tasks import NEVER_RUN, TaskSort
from reconciler.vocabulary import Outcome, Status, TaskType

MAX_LIMIT = 500


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """An instant in UTC; without an offset it is taken as UTC."""
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise PydanticCustomError("instant_range", "is out of range") from None


Text = Annotated[str, AfterValidator(_no_nul)]
Instant = Annotated[dt.datetime, AfterValidator(_utc)]
Format = Literal["json", "csv"]


class QueryParameters(BaseModel):
    """A route's query parameters; ``of(request)`` reads them, ``openapi()`` documents
    them for the route decorator's ``openapi_extra``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: int = Field(50, ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}")
    cursor: Text | None = Field(
        None, max_length=2000, description="next_cursor of the previous page"
    )

    @classmethod
    def of(cls, request: Request) -> Self:
        try:
            return cls.model_validate(request.query_params)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            located = [{**error, "loc": ("query", *error["loc"])} for error in errors]
            raise RequestValidationError(located) from None

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        """The parameters as OpenAPI describes them, a route's own before the shared."""
        schema = cls.model_json_schema()
        properties = _inline(schema["properties"], schema.get("$defs", {}))
        names = [name for klass in cls.__mro__ for name in vars(klass).get("__annotations__", ())]
        parameters = []
        for name in dict.fromkeys(n for n in names if n in cls.model_fields):
            field = cls.model_fields[name]
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
            parameter["schema"] = properties[name]
            if field.description:
                parameter["description"] = field.description
            parameters.append(parameter)
        return {"parameters": parameters}


class Exported(QueryParameters):
    """A list that also streams as CSV."""

    format: Format | None = Field(None, description="csv streams every matching row as CSV")


LAST_STATUSES = (*(status.value for status in Status), NEVER_RUN)


def _last_status(value: str) -> str:
    if value not in LAST_STATUSES:
        raise PydanticCustomError(
            "last_status",
            "{value} is not a last status; use {known}",
            {"value": repr(value)[:60], "known": ", ".join(LAST_STATUSES)},
        )
    return value


LastStatus = Annotated[
    Text,
    AfterValidator(_last_status),
    WithJsonSchema({"type": "string", "enum": list(LAST_STATUSES)}),
]


class TaskQuery(Exported):
    q: Text | None = Field(None, max_length=200, description="Substring of name/description/task")
    owner: Text | None = Field(None, max_length=200)
    type: TaskType | None = None
    enabled: bool | None = None
    last_status: LastStatus | None = Field(
        None, description="The last execution's status; never: tasks never run"
    )
    label: Text | None = Field(
        None, max_length=300, description="key (the task has the label) or key=value"
    )
    sort: TaskSort = "name"


class ExecutionQuery(Exported):
    """A task's executions (the task is in the path)."""

    status: Status | None = None
    since: Instant | None = Field(
        None, description="Queued at or after (ISO 8601; no offset means UTC)"
    )
    until: Instant | None = Field(None, description="Queued before (ISO 8601; no offset means UTC)")


class AllExecutionQuery(ExecutionQuery):
    task: Text | None = Field(None, max_length=200)


def _outcome_words(value: str) -> list[str]:
    return [word.strip() for word in value.split(",") if word.strip()]


def _outcomes(value: str) -> str:
    words = _outcome_words(value)
    unknown = [word for word in words if word not in {o.value for o in Outcome}]
    if not words or unknown:
        known = ", ".join(o.value for o in Outcome)
        shown = f"{unknown[0]!r} is not" if unknown else "nothing given is"
        raise PydanticCustomError("outcome", f"{shown} an outcome; use {known}, comma-separated")
    return value


class ApplyQuery(QueryParameters):
    outcome: Annotated[Text, AfterValidator(_outcomes)] | None = Field(
        None,
        max_length=200,
        description="Only attempts with these outcomes, comma-separated "
        "(applied, invalid, refused, failed)",
    )

    @property
    def outcomes(self) -> frozenset[Outcome] | None:
        if self.outcome is None:
            return None
        return frozenset(Outcome(word) for word in _outcome_words(self.outcome))


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """``schema`` with its ``$defs`` references (the vocabulary's enums) written in place:
    a route's parameters are not components of the OpenAPI document."""
    if isinstance(schema, dict):
        reference = schema.get("$ref", "")
        if reference.startswith("#/$defs/"):
            return _inline(definitions[reference.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(value, definitions) for value in schema]
    return schema
