"""Old display names as task identities: ``Daily Report`` -> ``daily-report``, ``每日报告``
-> ``meiribaogao`` (docs/import.md, "Rules")."""

from __future__ import annotations

import re
import unicodedata

from pypinyin import Style, lazy_pinyin

from reconciler.core.spec import NAME_PATTERN, RESERVED_NAMES

_NAME_RE = re.compile(NAME_PATTERN)
READABLE_LENGTH = 64
"""Names made from an old name are cut to this, at a word boundary where one is near."""
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def slugify(name: str, fallback: str = "task") -> str:
    """A valid task identity for an old display name, e.g. ``Daily Report`` -> ``daily-report``.

    Chinese characters become pinyin without tones, one word per run of characters
    (``测试任务`` -> ``ceshirenwu``); accents are dropped (``Café`` -> ``cafe``); other
    characters become ``-``. A name with nothing left starts from ``fallback``. Two old
    names may give the same identity: the import adds a suffix only then.
    """
    if _NAME_RE.match(name) and name not in RESERVED_NAMES:
        return name
    spelled = _HAN.sub(
        lambda match: " " + "".join(lazy_pinyin(match.group(0), style=Style.NORMAL)) + " ", name
    )
    decomposed = unicodedata.normalize("NFKD", spelled)
    slug = _clean("".join(ch for ch in decomposed if ch.isascii()))
    if not slug:
        slug = _clean(fallback) or "task"
    slug = _shorten(slug)
    if slug in RESERVED_NAMES:
        slug += "-task"
    return slug


def with_suffix(name: str, number: int) -> str:
    """``name`` with ``-2``, ``-3``... kept within the length limit."""
    suffix = f"-{number}"
    return name[: 128 - len(suffix)].rstrip("._-") + suffix


def _shorten(slug: str) -> str:
    if len(slug) <= READABLE_LENGTH:
        return slug
    cut = slug[:READABLE_LENGTH]
    boundary = max(cut.rfind("-"), cut.rfind("_"), cut.rfind("."))
    if boundary >= READABLE_LENGTH // 2:
        cut = cut[:boundary]
    return cut.rstrip("._-")


def _clean(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    slug = re.sub(r"([._-])[._-]+", r"\1", slug)
    return slug.strip("._-")
