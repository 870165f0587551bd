"""The one redaction policy (reconciler.core.redact): secret-looking keys, in values and in text."""

from __future__ import annotations

import json

import pytest

from reconciler.core.redact import (
    REDACTED,
    is_secret_key,
    redact,
    redact_definition,
    redact_field,
    redact_json,
    redact_text,
    redact_url_credentials,
)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "DBPassword",
        "passwd",
        "passwd_hint",
        "passphrase",
        "Secret",
        "client_secret_id",
        "token",
        "refreshToken",
        "api_key",
        "X-API-KEY",
        "apikey",
        "apiKey",
        "Authorization",
        "proxy_authorization",
        "auth",
        "basic_auth",
        "authHeader",
        "pwd",
        "credentials",
        "aws_credential_file",
        "private",
        "private_key",
        "privatekey",
        "signing_key",
        "accessKey",
        "AWS_SECRET_ACCESS_KEY",
        "sentry_dsn",
        "DSN",
        "session_cookie",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["region", "user", "pass", "key", "tok", "author", "authority", "monkey", "keys", "keyword",
     "KeyError", "passenger", "count", "", "dsnx"],
)  # fmt: skip
def test_other_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_only_string_keys_are_secret() -> None:
    assert not is_secret_key(1) and not is_secret_key(None)


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


def test_a_secret_env_reference_is_shown_as_written() -> None:
    value = {"db_password": {"secret_env": "BILLING_DB_PASSWORD"}, "token": {"x": 1}}
    assert redact(value) == {
        "db_password": {"secret_env": "BILLING_DB_PASSWORD"},
        "token": REDACTED,
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("connect(password=hunter2)", "connect(password=***)"),
        ("connect(host='db', password='hunter2')", "connect(host='db', password='***')"),
        ("{'api_key': 'abc123', 'n': 1}", "{'api_key': '***', 'n': 1}"),
        ('{"token": "abc", "region": "eu"}', '{"token": "***", "region": "eu"}'),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("db_password = s3cr3t; user=bob", "db_password = ***; user=bob"),
        ("?x=1&access_token=abc&y=2", "?x=1&access_token=***&y=2"),
        ("login failed for user bob\nline 2", "login failed for user bob\nline 2"),
        ("KeyError: 'password'", "KeyError: 'password'"),
        ("sentry_dsn: https://k@o.ingest/1", "sentry_dsn: ***"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_strings_inside_values_are_redacted_too() -> None:
    value = {"note": "retry with password=hunter2", "items": ["token: abc"]}
    assert redact(value) == {"note": "retry with password=***", "items": ["token: ***"]}


def test_redact_json_keeps_text_it_does_not_change() -> None:
    text = '{"region":  "eu", "key": "cache:1"}'
    assert redact_json(text) is text
    assert json.loads(redact_json('{"refresh_token": "t", "n": 1}')) == {
        "refresh_token": REDACTED,
        "n": 1,
    }
    # A JSON string holding repr text, as results of non-JSON values are stored.
    assert json.loads(redact_json(json.dumps("{'api_key': 'abc'}"))) == "{'api_key': '***'}"


def test_a_definition_shows_its_values_redacted_and_the_rest_as_written() -> None:
    definition = {
        "name": "billing-export",
        "description": "rotates the token: daily",
        "args": [{"password": "p"}],
        "kwargs": {"dsn": "postgresql://u:p@h/db", "region": "eu"},
        "labels": {"auth_team": "x", "tier": "1"},
        "options": {"queue": "secret-queue"},
    }
    assert redact_definition(definition) == {
        **definition,
        "args": [{"password": REDACTED}],
        "kwargs": {"dsn": REDACTED, "region": "eu"},
        "labels": {"auth_team": REDACTED, "tier": "1"},
    }
    assert redact_field("kwargs", {"api_key": "k"}) == {"api_key": REDACTED}
    assert redact_field("options.queue", "q") == "q"
    assert redact_field("description", "the token: daily") == "the token: daily"


def test_url_credentials_in_free_text_are_hidden() -> None:
    text = "fatal: unable to access 'https://bob:s3cret@git.example.com/x.git/': refused"
    assert redact_url_credentials(text) == (
        "fatal: unable to access 'https://***@git.example.com/x.git/': refused"
    )
    assert (
        redact_url_credentials("https://ghp_token@github.com/o/r") == "https://***@github.com/o/r"
    )
    assert redact_url_credentials("git@github.com: Permission denied") == (
        "git@github.com: Permission denied"
    )
