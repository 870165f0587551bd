"""Running the endpoint: the loopback-only rule without tokens, and uvicorn.

Used by ``reconcile serve`` and ``reconcile up``.
"""

from __future__ import annotations

import ipaddress
import os

from reconciler.errors import UsageError
from reconciler.settings import Settings
from reconciler.tokens import TokenSet, load_tokens, tokens_file_from_env


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
) -> None:
    """Check the bind, open the database, and serve until SIGINT/SIGTERM."""
    tokens = resolve_tokens(tokens_file)
    check_bind(host, tokens=tokens, insecure=insecure)
    # Imported only now, so a refused bind or a bad tokens file answers at once.
    import uvicorn

    from reconciler.web.app import create_app

    app = create_app(settings, tokens=tokens)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
