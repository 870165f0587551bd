"""Redaction of secret-looking kwargs (reconciler.redact)."""

from __future__ import annotations

import pytest

from reconciler.redact import REDACTED, is_secret_key, redact


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "Secret",
        "client_secret_id",
        "token",
        "refreshToken",
        "api_key",
        "X-API-KEY",
        "apikey",
        "Authorization",
        "proxy_authorization",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["region", "user", "pass", "key", "tok", "auth", "passwd_hint"])
def test_other_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_is_recursive_and_leaves_the_input_alone() -> None:
    value = {
        "region": "eu",
        "password": "hunter2",
        "nested": {"api_key": {"deep": 1}, "items": [{"token": "t", "n": 2}, "x"]},
        "count": 3,
    }
    assert redact(value) == {
        "region": "eu",
        "password": REDACTED,
        "nested": {"api_key": REDACTED, "items": [{"token": REDACTED, "n": 2}, "x"]},
        "count": 3,
    }
    assert value["password"] == "hunter2"
    assert redact(None) is None and redact([1, "a"]) == [1, "a"]
