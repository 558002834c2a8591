"""Code extraction policies: a table of (policy, response, program). Every misgrade found becomes a row."""

from __future__ import annotations

import pytest

from verifiers.code import extract_code
from verifiers.code.extract import POLICIES

FENCE = "```"

CASES = [
    # policy, response, expected program
    ("auto", f"Here:\n{FENCE}python\nprint(1)\n{FENCE}\n", "print(1)\n"),
    ("auto", f"{FENCE}py\nx = 1\n{FENCE}\nthen\n{FENCE}python3\ny = 2\n{FENCE}\n", "y = 2\n"),  # the last block
    ("auto", f"{FENCE}Python\nz = 3\n{FENCE}", "z = 3\n"),
    ("auto", f"{FENCE}\nplain = 1\n{FENCE}\n", "plain = 1\n"),  # no language named
    ("auto", f"{FENCE}python\na = 1\n{FENCE}\nSample:\n{FENCE}text\n3\n{FENCE}\n", "a = 1\n"),  # output block skipped
    ("auto", f"{FENCE}python\ntruncated = True\n", "truncated = True\n"),  # never closed: ran out of tokens
    ("auto", "    return sorted(x)\n", "    return sorted(x)\n"),  # a HumanEval completion: the whole text
    ("auto", f"{FENCE}python\n{FENCE}\nprint(2)\n", f"{FENCE}python\n{FENCE}\nprint(2)\n"),  # empty block: whole text
    ("last_fenced_block", "no code at all", ""),
    ("last_fenced_block", f"{FENCE}python\nq = 1\n{FENCE}", "q = 1\n"),
    ("last_fenced_block", f"{FENCE}bash\nls\n{FENCE}", ""),
    ("whole_text", f"{FENCE}python\nq = 1\n{FENCE}", f"{FENCE}python\nq = 1\n{FENCE}"),
    ("auto", "", ""),
]


@pytest.mark.parametrize("policy,response,program", CASES)
def test_extraction_table(policy, response, program):
    assert extract_code(response, policy) == program


def test_every_policy_is_in_the_table():
    assert {c[0] for c in CASES} == set(POLICIES)


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="last_fenced_block"):
        extract_code("x", "first_block")
