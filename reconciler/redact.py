"""Redaction of secret-looking values before anything is served or printed.

Used by the execution records of ``reconciler.store.queries`` (and so by the HTTP
endpoint and ``reconcile history``): a kwargs key that contains ``password``, ``secret``,
``token``, ``api_key`` or ``authorization`` (any case) has its value shown as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# "as part of a key": db_password, X-Api-Key, refreshToken all match.
SECRET_KEY = re.compile(r"password|secret|token|api[_-]?key|authorization", re.IGNORECASE)


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and SECRET_KEY.search(key) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking mapping keys' values replaced, at any depth.

    Lists are walked too, so a list of mappings (``[{"token": ...}]``) is covered.
    """
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_key(key) else redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
