"""The alembic migrations of the state store, shipped inside the package.

``reconciler.store.database.Database.upgrade`` runs them; ``reconcile db upgrade``
and every command that opens the database call that.
"""
