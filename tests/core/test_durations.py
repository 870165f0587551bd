"""Durations as written in task files: what is read, the canonical text, each refusal's words."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.durations import DURATION_HINT, format_duration, parse_duration
from reconciler.core.values import FieldError

UNITS = "d (days), h (hours), m (minutes) and s (seconds)"
ORDER = "units must come in the order d, h, m, s, each at most once"


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("45s", 45, "45s"),
        ("90m", 5400, "1h30m"),
        ("1h30m", 5400, "1h30m"),
        ("26h", 93600, "1d2h"),
        ("2d", 172800, "2d"),
        ("1d2h3m4s", 93784, "1d2h3m4s"),
        ("300s", 300, "5m"),
        ("1d24h", 172800, "2d"),
        ("1h0m", 3600, "1h"),
        ("  5m ", 300, "5m"),
        ("0d0h1s", 1, "1s"),
        ("999999999d", 999999999 * 86400, "999999999d"),
    ],
)
def test_read_and_written_canonically(text: str, seconds: int, canonical: str) -> None:
    duration = parse_duration(text)
    assert duration == dt.timedelta(seconds=seconds)
    assert format_duration(duration) == canonical
    assert parse_duration(canonical) == duration


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("", "is empty", DURATION_HINT),
        ("0s", "'0s' must be above 0", "e.g. 45s, 5m or 1h"),
        ("0d0h", "'0d0h' must be above 0", "e.g. 45s, 5m or 1h"),
        ("-5m", "'-5m' must be positive", "drop the '-': '5m'"),
        ("90", "'90' has no unit", "add one: 90s, 90m, 90h or 90d"),
        ("1h30", "'1h30': 30 has no unit", DURATION_HINT),
        ("1.5h", "'1.5h': fractions are not allowed", "write 1h30m"),
        (".5h", "'.5h': fractions are not allowed", "write 30m"),
        ("1.25s", "'1.25s' is not a whole number of seconds", "durations are whole seconds"),
        (
            "30m1h",
            f"'30m1h': {ORDER}",
            "write 1h30m",
        ),
        ("1h1h", f"'1h1h': {ORDER}", "write 2h"),
        ("2w", "'2w': unknown unit 'w'", "write 14d"),
        ("1H", "'1H': unknown unit 'H'", "write 1h"),
        ("10min", "'10min': unknown unit 'min'", "write 10m"),
        ("90M", "'90M': unknown unit 'M'", f"units are {UNITS}"),
        ("500ms", "'500ms': unknown unit 'ms'", f"units are {UNITS}"),
        ("1h 30m", "'1h 30m' has spaces", "write it without: '1h30m'"),
        ("\u0663m", "'\u0663m' uses digits other than ASCII 0-9", "write the numbers as 0-9"),
        ("\uff15m", "'\uff15m' uses digits other than ASCII 0-9", "write the numbers as 0-9"),
        ("abc", "'abc' is not a duration", DURATION_HINT),
        ("h", "'h' is not a duration", DURATION_HINT),
        ("1234567890s", "'1234567890s' is too large", "use at most 9 digits per part"),
        ("999999999d999999999h", "'999999999d999999999h' is too large", "use a shorter duration"),
    ],
)
def test_refusals_say_how_to_write_it(text: str, message: str, hint: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_duration(text)
    assert (caught.value.message, caught.value.hint) == (message, hint)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [90, 1.5, None, ["1h"]])
def test_not_text_is_refused(value: object) -> None:
    with pytest.raises(FieldError, match="expected a duration, got"):
        parse_duration(value)  # type: ignore[arg-type]


def test_zero_only_when_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == dt.timedelta(0)
    assert format_duration(dt.timedelta(0)) == "0s"


@pytest.mark.parametrize("value", [dt.timedelta(seconds=-1), dt.timedelta(milliseconds=1500)])
def test_format_takes_whole_seconds_only(value: dt.timedelta) -> None:
    with pytest.raises(ValueError, match="not a whole, non-negative number of seconds"):
        format_duration(value)


@given(st.integers(min_value=1, max_value=10**9))
def test_canonical_text_round_trips(seconds: int) -> None:
    text = format_duration(dt.timedelta(seconds=seconds))
    assert parse_duration(text) == dt.timedelta(seconds=seconds)
    assert format_duration(parse_duration(text)) == text
