"""The headers every response carries, and which Host names are answered.

Without a tokens file every caller reads everything, so the endpoint answers only
requests addressed to a loopback name or to a name on the allow-list: a web page that
points its own DNS name at 127.0.0.1 (DNS rebinding) sends that name as the Host and
gets 421 and nothing else. See docs/security.md, "The loopback server" and "Headers".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page loads its script and style from /static and talks to /api/v1 only; nothing
# inline, nothing from elsewhere, never inside a frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
UNCHECKED_PATHS = frozenset({"/healthz"})  # holds no data; probes address it by any name
_REMEMBERED = 256  # Host values whose verdict is kept (the few a server really sees)


def host_name(value: str) -> str | None:
    """The name of a Host header value (lower case, without port, brackets or a final
    dot), or None when it is not a valid ``host[:port]``."""
    text = value.strip().lower()
    if text.startswith("["):
        name, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        colon, port = rest[:1], rest[1:]
    else:
        name, colon, port = text.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return None
    name = name.removesuffix(".")
    return name or None


def is_loopback_name(name: str) -> bool:
    """localhost, a name under .localhost (RFC 6761), or a loopback address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostRule:
    """Loopback names, plus the allowed ones: exact names, ``*.example.com`` for the names
    under example.com, or ``*`` for any."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = tuple(allowed)
        names = {entry.lower().removesuffix(".") for entry in self.allowed}
        self.any = "*" in names
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))
        self.names = frozenset(name for name in names if not name.startswith("*"))
        self._seen: dict[bytes, bool] = {}

    def allows(self, header: bytes | None) -> bool:
        if header is None:
            return False
        verdict = self._seen.get(header)
        if verdict is None:
            verdict = self._judge(header.decode("latin-1"))
            if len(self._seen) < _REMEMBERED:
                self._seen[header] = verdict
        return verdict

    def _judge(self, value: str) -> bool:
        name = host_name(value)
        if name is None:
            return False
        if self.any or name in self.names or is_loopback_name(name):
            return True
        return name.endswith(self.suffixes) if self.suffixes else False


def _refusal(header: bytes | None) -> JSONResponse:
    shown = "no Host header" if header is None else f"Host {header.decode('latin-1')[:200]!r}"
    detail = (
        f"{shown} is not served here: without a tokens file this endpoint answers only "
        "loopback names (localhost, 127.0.0.1, [::1]); a proxy's name goes on the allow-list "
        "(--allowed-host or RECONCILER_ALLOWED_HOSTS)"
    )
    return JSONResponse({"detail": detail}, status_code=421, headers={"Connection": "close"})


class Guard:
    """Refuses a Host the rule does not allow (when there is a rule) and adds
    ``SECURITY_HEADERS`` to every response."""

    def __init__(self, app: ASGIApp, hosts: HostRule | None = None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        hosts = self.hosts
        if hosts is not None and scope["path"] not in UNCHECKED_PATHS:
            header = None
            for key, value in scope["headers"]:
                if key == b"host":
                    header = value
                    break
            if not hosts.allows(header):
                await _refusal(header)(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
