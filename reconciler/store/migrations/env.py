"""The alembic environment: runs revisions on the connection ``Database.upgrade`` hands in.

There is no alembic.ini: the caller builds the Config and passes an open connection in
``config.attributes["connection"]``, already inside the transaction that holds the
migration lock.
"""

from __future__ import annotations

from alembic import context

from reconciler.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    # The whole upgrade runs in the caller's transaction, also on SQLite, so a crash
    # mid-migration leaves the previous version.
    transactional_ddl=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
