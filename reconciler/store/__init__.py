"""The state store: every SQLAlchemy table, query and transaction of the project.

Only this package imports SQLAlchemy and alembic. The apply path, the Beat
scheduler, tracking, the CLI and the HTTP endpoint call the functions it exports.
"""
