"""CSV export: cells a spreadsheet would run are neutralised, on both paths."""

from __future__ import annotations

import csv
import io

import pytest

from reconciler.web.csvexport import CHUNK_ROWS, stream_csv, stream_records

FORMULAS = ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"]


def parse(chunks: list[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(chunks), newline="")))


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_start_with_an_apostrophe(text: str) -> None:
    rows = parse(list(stream_csv(["a", "b"], [{"a": text, "b": 1}])))
    assert rows == [["a", "b"], ["'" + text, "1"]]
    rows = parse(list(stream_records(["a", "b"], [[text, 1]])))
    assert rows == [["a", "b"], ["'" + text, "1"]]


def test_records_check_only_the_named_text_columns() -> None:
    records = [["=x", "-1", None, "=y"]]
    chunks = stream_records(["a", "b", "c", "d"], records, text_columns=["a", "d"])
    assert parse(list(chunks))[1] == ["'=x", "-1", "", "'=y"]
    assert records == [["=x", "-1", None, "=y"]]  # the caller's records are left as they were


def test_rows_come_in_chunks_with_crlf_line_ends() -> None:
    chunks = list(stream_records(["n"], ([i] for i in range(CHUNK_ROWS * 2 + 1))))
    assert len(chunks) == 3
    assert chunks[0].count("\r\n") == CHUNK_ROWS + 1  # the header, then a chunk of rows
    assert [int(r[0]) for r in parse(chunks)[1:]] == list(range(CHUNK_ROWS * 2 + 1))
