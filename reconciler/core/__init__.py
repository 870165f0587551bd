"""The task model and everything decided from it alone: schedules, firing, plans,
redaction. Pure: no database, broker or web I/O (docs/architecture.md)."""
