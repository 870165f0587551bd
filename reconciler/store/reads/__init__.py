"""The read side of the store: pages, cursors and counts for the CLI and the HTTP
endpoint (docs/architecture.md)."""
