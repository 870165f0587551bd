"""The one redaction policy: secret-looking values hidden wherever a value is served or
printed, under secret-looking keys and after them in free text (docs/security.md,
"Redaction")."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.core.secretref import is_reference

REDACTED = "***"

_STEMS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "privatekey",
    "authorization",
)
_WORDS = frozenset({"auth", "pwd", "dsn", "private", "cookie"})
# Words of a key: runs of capitals (an acronym), a capitalised or lower-case word, digits.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SEPARATORS = re.compile(r"[^a-z0-9]")

# A superset of what the rules above can match: text without any of these words holds
# nothing to redact. Substring tests on the lower-cased text, not one case-insensitive
# regex of alternatives, which costs microseconds even on a short text.
_HINT_WORDS = ("pass", "pwd", "secret", "token", "credential", "auth", "private", "dsn", "cookie")
# "key" alone is common in text ("KeyError"): only ``api key`` or a key ending a word counts.
_KEY_HINT = re.compile(r"api.?key|key\W")  # searched in the lower-cased text
# ``key=``, ``key:``, ``'key':``, then the value after it: a quoted string, a scheme and
# its credentials (``Bearer abc``), or a run up to a space or a delimiter.
_KEY = re.compile(r"""(?P<key>[A-Za-z_][\w.-]*)['"]?[ \t]*[=:][ \t]*""")
_VALUE = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|"""
    r"""(?:Bearer|Basic|Token|Digest)[ \t]+[^\s'",;)\]}]+|[^\s'",;&)\]}]+"""
)


@functools.lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    lower = key.lower()
    squashed = _SEPARATORS.sub("", lower)
    if any(stem in squashed for stem in _STEMS):
        return True
    words = [word.lower() for word in _WORD.findall(key)]
    if any(word in _WORDS for word in words):
        return True
    return len(words) > 1 and words[-1] == "key"


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _secret_name(key)


def might_hold_secrets(text: str) -> bool:
    """False when ``text`` certainly holds no secret-looking key."""
    lowered = text.lower()
    for word in _HINT_WORDS:
        if word in lowered:
            return True
    return "key" in lowered and _KEY_HINT.search(lowered) is not None


def redact_text(text: str) -> str:
    """``text`` with the value after each secret-looking ``key=`` / ``key:`` hidden."""
    if not might_hold_secrets(text):
        return text
    parts: list[str] = []
    done = 0  # text before this is copied or replaced already
    for match in _KEY.finditer(text):
        if match.start() < done or not _secret_name(match["key"]):
            continue
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        shown = value[0]
        quote = shown[0] if shown[0] in "'\"" else ""
        words = shown.split(None, 1)
        scheme = words[0] + " " if not quote and len(words) > 1 else ""
        parts += [text[done : value.start()], f"{quote}{scheme}{REDACTED}{quote}"]
        done = value.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking mapping keys' values replaced, at any depth,
    and secrets in its strings hidden (``redact_text``).

    Lists are walked too, so a list of mappings (``[{"token": ...}]``) is covered.
    """
    if isinstance(value, Mapping):
        if is_reference(value):
            return dict(value)
        return {
            key: REDACTED if is_secret_key(key) and not is_reference(item) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# The fields of a task definition that hold values passed to the task (and labels, free
# key-value pairs); the others (name, owner, description, schedule, options) are
# shown as written.
VALUE_FIELDS = ("args", "kwargs", "labels")


def redact_field(field: str, value: Any) -> Any:
    """The value of a task definition's field (or ``field.sub`` path) as shown."""
    top, _, _ = field.partition(".")
    if top in VALUE_FIELDS:
        return redact(value)
    if is_secret_key(field.rsplit(".", 1)[-1]) and not is_reference(value):
        return REDACTED
    return value


def redact_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A task definition (its JSON form) as shown: ``VALUE_FIELDS`` redacted."""
    shown = dict(definition)
    for field in VALUE_FIELDS:
        if shown.get(field):
            shown[field] = redact(shown[field])
    return shown


def redact_json(text: str) -> str:
    """JSON text as shown: the same text when nothing in it is secret-looking (the common
    case costs one regex search), else the redacted value encoded again."""
    if not might_hold_secrets(text):
        return text
    value = json.loads(text)
    shown = redact(value)
    if shown == value:
        return text
    return json.dumps(shown)


def redacted_repr(value: Any, limit: int) -> str:
    """``repr(value)`` as a message header shows it (monitoring tools display it): with
    secrets hidden when its text holds a secret-looking word, cut to ``limit``."""
    text = repr(value)
    if might_hold_secrets(text):
        text = repr(redact(value))
    return text[:limit]


# ``scheme://user:password@`` (or ``scheme://token@``) in free text: git's and drivers'
# messages name the URL they failed on, credentials and all.
_URL_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")


def redact_url_credentials(text: str) -> str:
    """``text`` with the credentials of each URL in it shown as ``***``, then
    ``redact_text``: ``https://***@git.example.com/repo.git``."""
    return redact_text(_URL_USERINFO.sub(f"{REDACTED}@", text))
