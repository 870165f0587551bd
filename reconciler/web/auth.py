"""Who is asking: the bearer token checked against the tokens file, scoped to an owner.

Every API route depends on ``principal``; without a tokens file everyone is an admin
(``reconcile serve`` then listens on loopback only).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.security import HTTPBearer

from reconciler.web.tokens import TokenSet


@dataclass(frozen=True)
class Principal:
    name: str
    owner: str | None  # None: sees every owner (an admin, or no tokens file)

    def may_see(self, owner: str | None) -> bool:
        return self.owner is None or (owner is not None and owner == self.owner)


ANYONE = Principal("anonymous", None)


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="reconciler"'
    if error:
        challenge += f', error="{error}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


class BearerToken(HTTPBearer):
    """FastAPI's bearer scheme (the OpenAPI document's security) that answers with the
    caller's ``Principal``: one dependency rather than the scheme and a function over it,
    which FastAPI would resolve in two steps on every request."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        # async: a hash and a few comparisons need no worker thread.
        tokens: TokenSet | None = request.app.state.tokens
        if tokens is None:
            return ANYONE
        credentials = await super().__call__(request)
        if credentials is None:
            raise _unauthorized("an 'Authorization: Bearer TOKEN' header is required")
        token = tokens.authenticate(credentials.credentials)
        if token is None:
            raise _unauthorized("the token is not in the tokens file", "invalid_token")
        return Principal(token.name, None if token.admin else token.owner)


principal = BearerToken(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="A token from the tokens file (RECONCILER_TOKENS_FILE); "
    "an owner's token sees only that owner's tasks.",
)
