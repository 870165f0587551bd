"""Old display names as task identities: ``Daily Report`` -> ``daily-report`` (docs/import.md)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from reconciler.core.spec import NAME_PATTERN, RESERVED_NAMES

_NAME_RE = re.compile(NAME_PATTERN)
_HASH_LENGTH = 8


def slugify(name: str, fallback: str = "task") -> str:
    """A valid task identity for an old display name, e.g. ``Daily Report`` -> ``daily-report``.

    Accents are dropped (``Café`` -> ``cafe``). When other characters cannot be kept
    (Chinese, emoji), a short hash of the original name is appended, so two different
    old names never become the same identity; an empty result starts from ``fallback``.
    """
    if _NAME_RE.match(name) and name not in RESERVED_NAMES:
        return name
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(ch for ch in decomposed if ch.isascii())
    lost = any(not ch.isascii() and not unicodedata.combining(ch) for ch in decomposed)
    slug = _clean(kept)
    if not slug:
        slug, lost = _clean(fallback) or "task", True
    suffix = ""
    if lost:
        suffix = "-" + hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]
    elif slug in RESERVED_NAMES:
        suffix = "-task"
    slug = slug[: 128 - len(suffix)].rstrip("._-") + suffix
    return slug


def _clean(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    slug = re.sub(r"([._-])[._-]+", r"\1", slug)
    return slug.strip("._-")
