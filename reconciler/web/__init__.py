"""The read-only HTTP endpoint of DESIGN §5.

``create_app`` builds it; ``reconcile serve`` runs it on uvicorn.
"""

from __future__ import annotations

from reconciler.web.app import create_app

__all__ = ["create_app"]
