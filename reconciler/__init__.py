"""celery-reconciler: Celery task schedules as code.

YAML task files under ``tasks.d/`` are validated (``reconciler.files.loader``), diffed against
the database (``reconciler.core.plan``), applied (``reconciler.apply``) and fired by the
database-backed Beat scheduler (``reconciler.beat``).
"""

__version__ = "0.1.0"
