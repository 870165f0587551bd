"""``reconcile import``: the old web API's task payloads as task files (docs/import.md).

``source`` reads the JSON file, ``names`` and ``mapping`` turn each payload into a task
document, ``render`` writes its YAML text, and ``plan`` checks them all, then writes.
"""
