"""Running the endpoint: the loopback-only rule without tokens, and uvicorn.

Used by ``reconcile serve`` and ``reconcile up``. With ``workers`` > 1, uvicorn runs that
many worker processes; each builds its own app (and connection pool) through
``app_from_environment``, since an app object cannot be handed to another process. The
settings and the tokens file travel to them in the ``RECONCILER_*`` environment variables.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from reconciler.errors import UsageError
from reconciler.settings import Settings
from reconciler.tokens import ENV_VAR as TOKENS_ENV_VAR
from reconciler.tokens import TokenSet, load_tokens, tokens_file_from_env

if TYPE_CHECKING:
    from fastapi import FastAPI

FACTORY = "reconciler.web.server:app_from_environment"


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


def resolve_tokens(tokens_file: str | os.PathLike[str] | None) -> TokenSet | None:
    path = tokens_file or tokens_file_from_env()
    return None if path is None else load_tokens(path)


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    access_log: bool = True,
    workers: int = 1,
) -> None:
    """Check the bind, open the database, and serve until SIGINT/SIGTERM."""
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    tokens = resolve_tokens(tokens_file)
    check_bind(host, tokens=tokens, insecure=insecure)
    # Imported only now, so a refused bind or a bad tokens file answers at once.
    import uvicorn

    from reconciler.web.protocol import ServerProtocol

    if workers == 1:
        from reconciler.web.app import create_app

        app = create_app(settings, tokens=tokens)
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=ServerProtocol,
            access_log=access_log,
            log_level="info",
        )
        return
    # The checks above ran here, before any worker starts; the workers read the same
    # settings and tokens file again from the environment they inherit.
    os.environ.update(
        {
            "RECONCILER_TASKS_DIR": str(settings.tasks_dir),
            "RECONCILER_DATABASE_URL": settings.database_url,
            "RECONCILER_BROKER_URL": settings.broker_url,
            "RECONCILER_APP": settings.app,
        }
    )
    path = tokens_file or tokens_file_from_env()
    if path is None:
        os.environ.pop(TOKENS_ENV_VAR, None)
    else:
        os.environ[TOKENS_ENV_VAR] = os.path.abspath(path)
    uvicorn.run(
        FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        http=ServerProtocol,
        access_log=access_log,
        log_level="info",
    )


def app_from_environment() -> FastAPI:
    """The app of one ``--workers`` process, from the environment ``run`` prepared."""
    from reconciler.web.app import create_app

    return create_app(Settings.resolve(), tokens=resolve_tokens(None))
