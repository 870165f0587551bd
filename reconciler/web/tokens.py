"""Access tokens of the HTTP endpoint: the tokens file, and checking a presented token.

``RECONCILER_TOKENS_FILE`` (or ``reconcile serve --tokens-file``) is YAML:
``tokens: [{name, sha256, owner} | {name, sha256, admin: true}]``; only SHA-256 digests
are stored. Used by ``reconcile serve`` and ``reconciler.web``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import ConfigError

ENV_VAR = "RECONCILER_TOKENS_FILE"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Token:
    """One token holder: an owner (sees that owner's tasks) or an admin (sees all)."""

    name: str
    digest: bytes
    owner: str | None
    admin: bool


@dataclass(frozen=True)
class TokenSet:
    tokens: tuple[Token, ...]
    path: str = ""

    def authenticate(self, presented: str) -> Token | None:
        """The holder of ``presented``, compared in constant time against every digest."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: Token | None = None
        # Compare against all of them, so the time taken does not tell which one matched.
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def hash_token(token: str) -> str:
    """The hex digest to put in the tokens file for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: str | os.PathLike[str], *, setting: str = "tokens file") -> TokenSet:
    """Read and check a tokens file; every mistake is a one-line ConfigError that starts
    with ``setting`` and the path and names the entry."""
    where = f"{setting} {os.fspath(path)}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{where}: cannot read it: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens"), list):
        found = "the file is empty" if document is None else "found something else"
        raise ConfigError(
            f"{where}: expected a mapping with a 'tokens' list, e.g. "
            f"tokens: [{{name: alice, sha256: <hex>, owner: billing}}] ({found})"
        )
    unknown = sorted(set(document) - {"tokens"}, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(map(str, unknown))}")
    tokens = tuple(_entry(where, index, entry) for index, entry in enumerate(document["tokens"]))
    names = [token.name for token in tokens]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}: token name {name!r} is used twice")
    if not tokens:
        raise ConfigError(f"{where}: 'tokens' is empty; no one could read anything")
    return TokenSet(tokens, os.fspath(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: the problem and where it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _entry(where: str, index: int, entry: Any) -> Token:
    at = f"{where}: tokens[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: expected a mapping with name, sha256 and owner or admin")
    unknown = sorted(set(entry) - {"name", "sha256", "owner", "admin"})
    if unknown:
        raise ConfigError(f"{at}: unknown field(s) {', '.join(map(str, unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{at}: name: a non-empty string is required")
    at = f"{at} ({name})"
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ConfigError(
            f"{at}: sha256: expected the 64 hex digits of the token's SHA-256 digest "
            "as a string (hint: printf %s TOKEN | sha256sum; quote it)"
        )
    owner = entry.get("owner")
    admin = entry.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{at}: admin: expected true or false")
    if owner is not None and (not isinstance(owner, str) or not owner):
        raise ConfigError(f"{at}: owner: a non-empty string is required")
    if admin == (owner is not None):
        raise ConfigError(f"{at}: give exactly one of 'owner: NAME' or 'admin: true'")
    return Token(name=name, digest=bytes.fromhex(digest), owner=owner, admin=admin)
