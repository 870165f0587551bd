"""One module per schema revision, oldest first; each mirrors ``reconciler.store.tables``."""
