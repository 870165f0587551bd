"""``reconcile import``: other schedulers' tasks as task files (docs/import.md).

``source`` reads the old web API's JSON file and the ``--names`` map; ``mapping`` turns
each web API payload, ``entries`` each entry of Celery's ``beat_schedule``,
django-celery-beat or RedBeat (read by ``reconciler.celeryapp`` and
``reconciler.store.importsources``) into a task document; ``names`` makes readable
identities, ``render`` writes the YAML text, and ``plan`` checks them all, then writes.
"""

SOURCES = {
    "web-api": "the old web app",
    "beat-schedule": "Celery's beat_schedule",
    "django-celery-beat": "django-celery-beat",
    "redbeat": "RedBeat",
}
"""``--from`` choices, and how a file's comment names each (here, light enough for --help)."""
