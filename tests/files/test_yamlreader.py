"""The YAML reader's plain values equal PyYAML's safe loader's, however often a text recurs."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.files import yamlreader
from reconciler.files.yamlreader import Builder, compose

# Texts whose first character has implicit rules (bools, nulls, numbers, dates, merge
# keys), beside text that is only text.
_RULED = (
    "yes No on OFF true null ~ Null 0 -7 0x1f 0o17 1_000 1.5 -.5e3 .inf -.Inf .nan 2031-12-25 "
    "2031-12-25T10:00:00Z 12:30:00 190:20:30 10m 1h30m bench-holidays y n ="
)
PLAIN = st.one_of(
    st.sampled_from([*_RULED.split(), "2031-12-25 10:00:00.5+01:00"]),
    st.from_regex(r"[a-zA-Z0-9.:_+-][a-zA-Z0-9.:_ +-]{0,40}", fullmatch=True).map(str.strip),
)


def read(text: str) -> Any:
    documents, error = compose(text, "t.yaml")
    assert error is None and len(documents) == 1
    builder = Builder()
    value = builder.build(documents[0])
    assert builder.problems == []
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(PLAIN.filter(bool), min_size=1, max_size=8))
def test_plain_values_read_as_the_safe_loader_reads_them(values: list[str]) -> None:
    text = "".join(f"- {value}\n" for value in values)
    try:
        expected = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):
        return  # not valid YAML, or a value the constructors refuse: other tests cover it
    # Twice: the second reading takes the tags the first one resolved.
    assert read(text) == expected
    assert read(text) == expected


def test_resolved_tags_stay_bounded_and_right_after_many_distinct_values() -> None:
    kept = yamlreader._short_plain_tag.cache_info().maxsize
    assert kept is not None
    many = kept + 100
    text = "".join(f"- value-{index}\n" for index in range(many))
    assert read(text) == [f"value-{index}" for index in range(many)]
    assert yamlreader._short_plain_tag.cache_info().currsize <= kept
    assert read("[yes, null, 1, 1.5, 2031-12-25, abc]\n") == yaml.safe_load(
        "[yes, null, 1, 1.5, 2031-12-25, abc]\n"
    )
