"""Old display names as task identities: ``Daily Report`` -> ``daily-report``, ``每日报告``
-> ``meiribaogao``, ``Ежедневный отчёт`` -> ``ezhednevnyy-otchet`` (docs/import.md, "Rules")."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from anyascii import anyascii
from pypinyin import Style, lazy_pinyin

from reconciler.core.spec import NAME_PATTERN, RESERVED_NAMES

_NAME_RE = re.compile(NAME_PATTERN)
READABLE_LENGTH = 64
"""Names made from an old name are cut to this, at a word boundary where one is near."""
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_GAP = ""
"""The script of a run of characters that are neither letters, digits nor marks."""
_SMALL_KANA = dict(zip("ぁぃぅぇぉゃゅょァィゥェォャュョ", "aiueoauoaiueoauo", strict=True))
"""The vowel of each small kana that anyascii spells as a syllable of its own."""


def slugify(name: str, fallback: str = "task") -> str:
    """A valid task identity for an old display name, e.g. ``Daily Report`` -> ``daily-report``.

    Chinese characters become pinyin without tones, one word per run of characters
    (``测试任务`` -> ``ceshirenwu``); other letters are spelled in ASCII, accents dropped
    (``Café`` -> ``cafe``, ``Ελλάδα`` -> ``ellada``), with a word break where the script
    changes; other characters (punctuation, symbols, emoji) become ``-``. A name with
    nothing left starts from ``fallback``. Two old names may give the same identity: the
    import adds a suffix only then.
    """
    if _NAME_RE.match(name) and name not in RESERVED_NAMES:
        return name
    slug = _clean(_spelled(name))
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


def _spelled(name: str) -> str:
    """``name`` in ASCII: each run of letters of one script spelled, Han with pypinyin
    (Japanese kanji too: there is no Japanese dictionary here), every other script with
    anyascii; two runs that touch are parted by a space; other characters kept as they are."""
    out: list[str] = []
    after_word = False
    for script, run in _runs(unicodedata.normalize("NFKC", name)):
        if script == _GAP:
            out.append(run)
            after_word = False
            continue
        if script == "HAN":
            run = "".join(lazy_pinyin(run, style=Style.NORMAL))
        elif script in ("HIRAGANA", "KATAKANA"):
            run = _kana(run)
        # anyascii spells some letters as an apostrophe (Cyrillic ъ, ь): not a word break
        out.append((" " if after_word else "") + anyascii(run).replace("'", ""))
        after_word = True
    return "".join(out)


def _kana(run: str) -> str:
    """Kana in Hepburn where anyascii spells them one by one: a small ya, yu or yo joins
    the syllable before it (``きょう`` -> ``kyou``, not ``kiyou``), a small vowel takes the
    place of its vowel (``ファイル`` -> ``fairu``), a small tsu doubles the consonant after it
    (``バックアップ`` -> ``bakkuappu``)."""
    out = ""
    double = False
    for ch in run:
        if ch in "っッ":
            double = True
            continue
        spelled = anyascii(ch)
        small = _SMALL_KANA.get(ch)
        if small and ch in "ゃゅょャュョ" and out.endswith("i"):
            stem = out[:-1]
            out = stem + ("" if stem.endswith(("sh", "ch", "j")) else "y") + small
        elif small and ch not in "ゃゅょャュョ" and out[-1:] in ("a", "i", "u", "e", "o"):
            stem = out[:-1]
            if not stem or stem[-1] in "aiueo":  # ウィ -> wi, イェ -> ye
                stem += {"u": "w", "i": "y"}.get(out[-1], out[-1])
            out = stem + small
        else:
            if double and spelled[:1].isalpha() and spelled[:1] not in "aiueo":
                spelled = ("t" if spelled.startswith("ch") else spelled[0]) + spelled
            out += spelled
        double = False
    return out


def _runs(text: str) -> Iterator[tuple[str | None, str]]:
    """``text`` cut into runs of letters, digits and marks of one script, and the other
    characters between them. Digits, marks and modifier letters (``ー``) join the run they
    follow, except a Han one, which holds Han characters only."""
    script: str | None = _GAP
    run = ""
    for ch in text:
        category = unicodedata.category(ch)
        if category[0] not in "LMN":
            own: str | None = _GAP
        elif category in ("Lu", "Ll", "Lt", "Lo"):
            own = _script(ch)
        else:
            own = None
        if own == script or (own is None and script not in (_GAP, "HAN")):
            run += ch
        elif script is None and own not in (_GAP, "HAN"):
            script = own
            run += ch
        else:
            if run:
                yield script, run
            script, run = own, ch
    if run:
        yield script, run


def _script(ch: str) -> str:
    """The script of a letter: Han, or the first word of its Unicode name (``CYRILLIC``)."""
    if _HAN.match(ch):
        return "HAN"
    return unicodedata.name(ch, "UNNAMED").split(" ")[0]


def _clean(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    slug = re.sub(r"([._-])[._-]+", r"\1", slug)
    return slug.strip("._-")
