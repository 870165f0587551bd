"""Secrets kept out of the task files: a value ``{secret_env: NAME}`` in args or kwargs.

The reference is validated with the task (``reference_problems``), stored and served as
written, and replaced by the environment variable's value only in the message that the
publishing process sends (beat, ``reconcile trigger``: ``resolve``). Pure: the
environment is passed in. docs/task-files.md ("Secrets stay out of git") describes it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

SECRET_ENV = "secret_env"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME_HINT = "a variable name: letters, digits and '_', not starting with a digit"

Location = tuple[str | int, ...]


class MissingSecret(Exception):
    """References name variables that are not set; ``names`` lists them."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"environment variable(s) not set: {', '.join(names)}")
        self.names = names


def is_reference(value: object) -> bool:
    """Whether ``value`` is a well-formed reference (a mapping of ``secret_env`` alone)."""
    return isinstance(value, Mapping) and len(value) == 1 and SECRET_ENV in value


def reference_problems(value: Any, loc: Location = ()) -> Iterator[tuple[Location, str, str]]:
    """Each malformed reference in a JSON value: where (below ``loc``), what, and a hint."""
    if isinstance(value, Mapping):
        if SECRET_ENV in value:
            if len(value) > 1:
                others = ", ".join(repr(key) for key in value if key != SECRET_ENV)
                yield (
                    loc,
                    f"a {SECRET_ENV} reference takes no other keys, got {others}",
                    f"write the value as {{{SECRET_ENV}: NAME}} on its own",
                )
            name = value[SECRET_ENV]
            if not isinstance(name, str) or not ENV_NAME.match(name):
                yield (
                    (*loc, SECRET_ENV),
                    f"must name an environment variable, got {name!r}",
                    f"use {ENV_NAME_HINT}, e.g. BILLING_DB_PASSWORD",
                )
            return
        for key, item in value.items():
            yield from reference_problems(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from reference_problems(item, (*loc, index))


def referenced_names(value: Any) -> list[str]:
    """The variables ``value``'s references name, each once, in order of appearance."""
    found: dict[str, None] = {}
    _collect(value, found)
    return list(found)


def _collect(value: Any, found: dict[str, None]) -> None:
    if isinstance(value, Mapping):
        if is_reference(value):
            found[str(value[SECRET_ENV])] = None
            return
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def missing_names(*values: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables the references in ``values`` name that ``environ`` lacks."""
    env = os.environ if environ is None else environ
    names: list[str] = []
    for value in values:
        names += referenced_names(value)
    return sorted({name for name in names if name not in env})


def resolve(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """``value`` with each reference replaced by its variable's value (the same object
    when it holds none); ``MissingSecret`` names every variable that is not set."""
    if not _has_reference(value):
        return value
    env = os.environ if environ is None else environ
    missing = missing_names(value, environ=env)
    if missing:
        raise MissingSecret(missing)
    return _resolved(value, env)


def _has_reference(value: Any) -> bool:
    if isinstance(value, Mapping):
        return is_reference(value) or any(_has_reference(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_reference(item) for item in value)
    return False


def _resolved(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        if is_reference(value):
            return env[value[SECRET_ENV]]
        return {key: _resolved(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, env) for item in value]
    return value


def refusal(
    name: str, args: Any, kwargs: Any, environ: Mapping[str, str] | None = None
) -> str | None:
    """Why an execution of task ``name`` cannot be published from this process (its
    references name variables that are not set), or None when it can."""
    if not args and not kwargs:
        return None
    missing = missing_names(args, kwargs, environ=environ)
    if not missing:
        return None
    plural = "s" if len(missing) > 1 else ""
    return (
        f"not published: task {name!r} needs the environment variable{plural} "
        f"{', '.join(missing)} ({SECRET_ENV}), not set where it is published "
        f"(beat or 'reconcile trigger')"
    )
