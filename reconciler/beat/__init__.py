"""Sending what is due: the Celery Beat scheduler (``reconciler.beat:DatabaseScheduler``),
the ticker, the message seam, the publisher and the manual run (docs/beat.md)."""

from reconciler.beat.scheduler import DatabaseScheduler

__all__ = ["DatabaseScheduler"]
