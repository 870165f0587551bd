"""The read-only HTTP endpoint (docs/http-api.md).

``create_app`` builds it; ``reconcile serve`` runs it on uvicorn.
"""

from __future__ import annotations

from reconciler.web.app import create_app

__all__ = ["create_app"]
