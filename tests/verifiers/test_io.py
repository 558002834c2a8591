"""JSONL reading names file and line; atomic writes never leave a partial file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifiers.io import InputError, read_jsonl, write_jsonl_atomic, write_text_atomic


def test_read_jsonl_skips_blank_lines_and_numbers_rows(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n\n{"b": 2}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"b": 2})]


@pytest.mark.parametrize("bad, what", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_read_jsonl_names_file_and_line(tmp_path: Path, bad: str, what: str) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n' + bad + "\n")
    with pytest.raises(InputError, match=rf"in\.jsonl:2: {what}"):
        list(read_jsonl(p))


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    assert write_jsonl_atomic(p, [{"a": 1}]) == 1

    def rows():
        yield {"b": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(p, rows())
    assert [row for _, row in read_jsonl(p)] == [{"a": 1}]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.jsonl"]


def test_write_text_atomic_creates_parents(tmp_path: Path) -> None:
    p = tmp_path / "deep" / "dir" / "report.md"
    write_text_atomic(p, "# report\n")
    assert p.read_text() == "# report\n"
