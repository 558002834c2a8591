"""``rest-em verify``: file mode, one-off form, malformed input, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def rest_em(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rest_em.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def write_rows(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": "a", "reference": r"\frac{1}{2}", "response": r"so $\boxed{0.5}$", "extra": [1, 2]},
    {"id": "b", "reference": "We find $\\boxed{7}$.", "response": "The answer is 8.", "reference_format": "math_solution"},
    {"id": 3, "reference": "4 + 5 = <<4+5=9>>9\n#### 9", "response": "#### 9", "reference_format": "gsm8k"},
    {"id": "d", "reference": "5", "response": "I am not sure."},
    {"id": "e", "reference": "No box here.", "response": r"\boxed{1}", "reference_format": "math_solution"},
]


def test_file_mode_writes_each_row_with_its_verdict(tmp_path):
    out = tmp_path / "out" / "verdicts.jsonl"
    result = rest_em("verify", "--domain", "math", str(write_rows(tmp_path / "in.jsonl", ROWS)), "-o", str(out),
                     "--timeout-s", "5", "--workers", "2")
    assert result.returncode == 0, result.stderr  # fail and error verdicts are data, not a failed command
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == ["a", "b", 3, "d", "e"]
    assert [(r["verdict"], r["reason"]) for r in written] == [
        ("pass", "correct"),
        ("fail", "wrong_answer"),
        ("pass", "correct"),
        ("fail", "no_answer"),
        ("error", "unparseable_reference"),
    ]
    assert written[0]["extra"] == [1, 2] and all("message" in r for r in written)


def test_one_off_form_prints_one_json_line():
    result = rest_em("verify", "--domain", "math", "--reference", "42", "--response", "The answer is 42.")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["verdict"] == "pass"
    result = rest_em("verify", "--reference", "#### 18", "--response", "#### 17", "--reference-format", "gsm8k")
    assert (result.returncode, json.loads(result.stdout)["reason"]) == (0, "wrong_answer")


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": 3, "reference": "1",', "not valid JSON"),
        ('{"id": 3, "response": "1"}', "missing key 'reference'"),
        ('{"id": 3, "reference": "1", "response": "1", "reference_format": "tex"}', "unknown reference_format"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_input_exits_2_naming_the_line_and_writes_nothing(tmp_path, bad_line, message):
    rows = [ROWS[0], ROWS[1], bad_line, ROWS[3]]
    src = write_rows(tmp_path / "in.jsonl", rows)
    out = tmp_path / "verdicts.jsonl"
    result = rest_em("verify", "--domain", "math", str(src), "-o", str(out))
    assert result.returncode == 2
    assert f"{src}:3:" in result.stderr and message in result.stderr, result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary file left behind either


def test_usage_errors_exit_2(tmp_path):
    assert rest_em("verify", "--domain", "math", "--reference", "1").returncode == 2
    assert rest_em("verify", "--domain", "math", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")).returncode == 2
    result = rest_em("verify", "--domain", "chess", "--reference", "1", "--response", "1")
    assert result.returncode == 2 and "unknown domain 'chess'" in result.stderr


def test_help_explains_the_input_format_with_an_example():
    result = rest_em("verify", "--help")
    assert result.returncode == 0
    for needle in ('"reference_format"', "math_solution", "gsm8k", "rest-em verify --domain math", "-o verdicts.jsonl",
                   "--timeout-s", "--workers", '"verdict"'):
        assert needle in result.stdout, needle


# Bare answers (issue #12): the whole response is the answer.
BARE_ROWS = [
    {"id": "half", "reference": r"\frac{1}{2}", "response": r"\dfrac{1}{2}"},
    {"id": "dollars", "reference": r"\frac{1}{2}", "response": "$0.5$"},
    {"id": "paren", "reference": "(1, 2)", "response": r"\(\left(1,2\right)\)"},
    {"id": "boxed", "reference": "18", "response": r"\boxed{18}"},
    {"id": "wrong", "reference": "18", "response": "17"},
    {"id": "empty", "reference": "18", "response": ""},
    {"id": "row-says-text", "reference": "18", "response": "so 17, no: \\boxed{18}", "response_format": "text"},
]


def test_response_format_answer_grades_a_file_of_bare_answers(tmp_path):
    out = tmp_path / "verdicts.jsonl"
    src = write_rows(tmp_path / "answers.jsonl", BARE_ROWS)
    result = rest_em("verify", "--domain", "math", "--response-format", "answer", str(src), "-o", str(out),
                     "--workers", "2")
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["verdict"], r["reason"], r.get("extracted_by")) for r in written] == [
        ("half", "pass", "correct", "whole_response"),
        ("dollars", "pass", "correct", "whole_response"),
        ("paren", "pass", "correct", "whole_response"),
        ("boxed", "pass", "correct", "whole_response"),
        ("wrong", "fail", "wrong_answer", "whole_response"),
        ("empty", "fail", "no_answer", None),
        ("row-says-text", "pass", "correct", "last_boxed"),
    ]
    # Without the flag the same file is free text: answers in math delimiters are found by last_math
    # (the CLI's last-resort policy); bare LaTeX outside delimiters and the empty response are not.
    result = rest_em("verify", "--domain", "math", str(src), "-o", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["verdict"], r.get("extracted_by")) for r in written] == [
        ("half", "fail", None), ("dollars", "pass", "last_math"), ("paren", "pass", "last_math"),
        ("boxed", "pass", "last_boxed"), ("wrong", "fail", "last_math"), ("empty", "fail", None),
        ("row-says-text", "pass", "last_boxed"),
    ]


def test_extraction_policies_flag_and_its_errors(tmp_path):
    one = ["verify", "--domain", "math", "--reference", "5", "--response", "so $y = 5$"]
    assert json.loads(rest_em(*one).stdout)["extracted_by"] == "last_math"
    result = rest_em(*one, "--extraction-policies", "last_boxed,answer_is")
    assert (result.returncode, json.loads(result.stdout)["reason"]) == (0, "no_answer")
    result = rest_em(*one, "--extraction-policies", "last_boxd")
    assert result.returncode == 2 and "unknown extraction policy 'last_boxd'" in result.stderr
    result = rest_em("verify", "--domain", "math", "--response-format", "bare", "--reference", "1", "--response", "1")
    assert result.returncode == 2 and "invalid choice: 'bare'" in result.stderr
    result = rest_em("verify", "--domain", "code", "--response-format", "answer", str(tmp_path / "x"), "-o", "y")
    assert result.returncode == 2 and "math options" in result.stderr
    bad = write_rows(tmp_path / "bad.jsonl", [{"id": 1, "reference": "1", "response": "1", "response_format": "tex"}])
    result = rest_em("verify", str(bad), "-o", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and f"{bad}:1: unknown response_format 'tex'" in result.stderr
