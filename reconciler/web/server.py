"""Running the endpoint: without tokens, loopback only (the bind address and the Host
names answered); the tokens setting; uvicorn with the header and idle timeouts.

Used by ``reconcile serve`` and ``reconcile up``. With ``workers`` > 1, uvicorn runs that
many worker processes; each builds its own app (and connection pool) through
``app_from_environment``, since an app object cannot be handed to another process. The
settings, the tokens file, the allowed hosts and the header timeout travel to them in the
``RECONCILER_*`` environment variables.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING, Any

from reconciler.errors import ConfigError, UsageError
from reconciler.settings import Settings
from reconciler.web.guard import host_name
from reconciler.web.protocol import HEADER_TIMEOUT
from reconciler.web.tokens import ENV_VAR as TOKENS_ENV_VAR
from reconciler.web.tokens import TokenSet, load_tokens

if TYPE_CHECKING:
    from fastapi import FastAPI

FACTORY = "reconciler.web.server:app_from_environment"
HOSTS_ENV_VAR = "RECONCILER_ALLOWED_HOSTS"
HEADER_TIMEOUT_ENV_VAR = "RECONCILER_HEADER_TIMEOUT"
KEEP_ALIVE = 5  # seconds a connection may stay idle after a response (uvicorn's default)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it could resolve to anything


def check_bind(host: str, *, tokens: TokenSet | None, insecure: bool) -> None:
    """Without tokens the endpoint shows every owner's history, so only loopback may see it."""
    if tokens is None and not insecure and not is_loopback(host):
        raise UsageError(
            f"--host {host}: refusing to listen on a non-loopback address without a tokens "
            "file, since anyone who can reach it would read every task's history. Give "
            "--tokens-file (or RECONCILER_TOKENS_FILE), or --insecure to allow it anyway."
        )


def tokens_setting(tokens_file: str | os.PathLike[str] | None) -> tuple[str, str] | None:
    """The tokens setting that is set (its name and value), or None when neither is:
    ``--tokens-file``, else ``RECONCILER_TOKENS_FILE``. Set but empty is still set."""
    if tokens_file is not None:
        return "--tokens-file", os.fspath(tokens_file)
    if TOKENS_ENV_VAR in os.environ:
        return TOKENS_ENV_VAR, os.environ[TOKENS_ENV_VAR]
    return None


def resolve_tokens(tokens_file: str | os.PathLike[str] | None) -> TokenSet | None:
    """The tokens of the setting, or None when no tokens setting is given at all. A setting
    that is given but empty or unreadable refuses to start: serving without tokens is
    never the answer to a typo."""
    setting = tokens_setting(tokens_file)
    if setting is None:
        return None
    name, path = setting
    if not path.strip():
        raise ConfigError(
            f"{name} is set but empty: give the path of a tokens file, or leave it unset "
            "to serve without tokens (loopback names only)"
        )
    return load_tokens(path, setting=name)


def resolve_allowed_hosts(allowed_hosts: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``--allowed-host`` values and ``RECONCILER_ALLOWED_HOSTS`` (comma-separated), each
    a host name (a port is ignored), ``*.example.com`` or ``*``."""
    given = [*allowed_hosts, *os.environ.get(HOSTS_ENV_VAR, "").split(",")]
    hosts: list[str] = []
    for entry in given:
        name = entry.strip().lower()
        if not name:
            continue
        if name != "*":
            wildcard = name.startswith("*.")
            parsed = host_name(name[2:] if wildcard else name)
            if parsed is None or any(char in parsed for char in "/@ *"):
                raise UsageError(
                    f"--allowed-host / {HOSTS_ENV_VAR}: {entry.strip()!r} is not a host name "
                    "(e.g. reconciler.example.com, *.example.com or *)"
                )
            name = f"*.{parsed}" if wildcard else parsed
        if name not in hosts:
            hosts.append(name)
    return tuple(hosts)


def host_rule(tokens: TokenSet | None, allowed_hosts: tuple[str, ...]) -> tuple[str, ...] | None:
    """The names to answer besides loopback ones, or None to answer any Host: without
    tokens, loopback names and the allowed ones; with tokens, any unless some are listed."""
    if tokens is None or allowed_hosts:
        return allowed_hosts
    return None


def header_timeout_from_env() -> float:
    value = os.environ.get(HEADER_TIMEOUT_ENV_VAR, "").strip()
    if not value:
        return HEADER_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 3600:
        raise UsageError(f"{HEADER_TIMEOUT_ENV_VAR}={value}: expected seconds, above 0")
    return seconds


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    access_log: bool = True,
    workers: int = 1,
    allowed_hosts: tuple[str, ...] = (),
    header_timeout: float | None = None,
    keep_alive: int = KEEP_ALIVE,
) -> None:
    """Check the bind, open the database, and serve until SIGINT/SIGTERM.

    ``header_timeout``: seconds for a request's headers to arrive (default: the
    ``RECONCILER_HEADER_TIMEOUT`` environment variable, else ``HEADER_TIMEOUT``);
    ``keep_alive``: seconds an idle connection stays open after a response.
    """
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    if header_timeout is None:
        header_timeout = header_timeout_from_env()
    elif not 0 < header_timeout < 3600:
        raise UsageError(f"--header-timeout {header_timeout}: expected seconds, above 0")
    tokens = resolve_tokens(tokens_file)
    check_bind(host, tokens=tokens, insecure=insecure)
    hosts = resolve_allowed_hosts(allowed_hosts)
    # Imported only now, so a refused bind or a bad tokens file answers at once.
    import uvicorn

    from reconciler.web.protocol import ServerProtocol

    # One server's settings, with one worker or many.
    server: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": ServerProtocol,
        "access_log": access_log,
        "log_level": "info",
        "timeout_keep_alive": keep_alive,
    }
    if workers == 1:
        from reconciler.web.app import create_app

        ServerProtocol.header_timeout = header_timeout
        app = create_app(settings, tokens=tokens, allowed_hosts=host_rule(tokens, hosts))
        uvicorn.run(app, **server)
        return
    # The checks above ran here, before any worker starts; the workers read the same
    # settings and tokens file again from the environment they inherit.
    os.environ.update(
        {
            "RECONCILER_TASKS_DIR": str(settings.tasks_dir),
            "RECONCILER_DATABASE_URL": settings.database_url,
            "RECONCILER_BROKER_URL": settings.broker_url,
            "RECONCILER_APP": settings.app,
            HOSTS_ENV_VAR: ",".join(hosts),
            HEADER_TIMEOUT_ENV_VAR: repr(header_timeout),
        }
    )
    setting = tokens_setting(tokens_file)
    if setting is None:
        os.environ.pop(TOKENS_ENV_VAR, None)
    else:
        os.environ[TOKENS_ENV_VAR] = os.path.abspath(setting[1])
    uvicorn.run(FACTORY, factory=True, workers=workers, **server)


def app_from_environment() -> FastAPI:
    """The app of one ``--workers`` process, from the environment ``run`` prepared."""
    from reconciler.web.app import create_app
    from reconciler.web.protocol import ServerProtocol

    ServerProtocol.header_timeout = header_timeout_from_env()
    tokens = resolve_tokens(None)
    hosts = host_rule(tokens, resolve_allowed_hosts())
    return create_app(Settings.resolve(), tokens=tokens, allowed_hosts=hosts)
