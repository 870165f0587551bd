"""Finding the user's Celery app (``module:attr``) and the task names it registers.

Used by ``validate --app``, ``reconcile tasks``, beat, ``up`` and ``doctor``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from celery import Celery

from reconciler.errors import ConfigError


def load_app(path: str) -> Celery:
    """Import ``module:attr`` (``module`` alone means its ``app`` attribute)."""
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {path}: cannot import {module_name!r}: {exc}") from exc
    app: Any = module
    for part in attr.split("."):
        app = getattr(app, part, None)
        if app is None:
            raise ConfigError(f"--app {path}: {module_name!r} has no attribute {attr!r}")
    if not isinstance(app, Celery):
        raise ConfigError(f"--app {path}: {attr!r} is a {type(app).__name__}, not a Celery app")
    return app


def registered_task_names(app: Celery) -> list[str]:
    """The app's own task names, without Celery's built-in ``celery.*`` tasks."""
    app.loader.import_default_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))
