"""Task files: discovery, the hardened YAML reader, the loader, the JSON Schema and
import (docs/architecture.md)."""
