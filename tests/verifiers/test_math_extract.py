"""Tables for the answer extraction policies and the reference formats (no worker processes)."""

from __future__ import annotations

import pytest

from verifiers.math import DEFAULT_POLICIES, extract_answer
from verifiers.math.normalize import normalize_answer
from verifiers.math.reference import read_reference

# (policy list, response, expected answer or None)
LAST_BOXED = [
    (["last_boxed"], r"so $\boxed{5}$.", "5"),
    (["last_boxed"], r"first \boxed{1}, then \boxed{2}", "2"),
    (["last_boxed"], r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
    (["last_boxed"], r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not close the box
    (["last_boxed"], r"\fbox{7}", "7"),
    (["last_boxed"], r"$\boxed 5$", "5"),
    (["last_boxed"], r"\boxed {12}", "12"),
    (["last_boxed"], r"\boxed{}", None),
    (["last_boxed"], r"\boxed{1", None),  # never closed
    (["last_boxed"], r"\boxed{3} and then \boxed{4", "3"),  # a broken last box falls back to the previous
    (["last_boxed"], r"\boxedfoo{3}", None),
    (["last_boxed"], "no box here", None),
]
ANSWER_IS = [
    (["answer_is"], "So the answer is 42.", "42"),
    (["answer_is"], "The final answer is $\\frac{3}{4}$. I hope it is correct.", r"\frac{3}{4}"),
    (["answer_is"], "Final answer: 3.5", "3.5"),
    (["answer_is"], "the answer is 2. No wait, the answer is 3.", "3"),
    (["answer_is"], "The answer is: $x = 1.5$.", "x = 1.5"),
    (["answer_is"], "I think it is 4", None),
]
GSM8K_HASH = [
    (["gsm8k_hash"], "She makes 9 * 2 = $18.\n#### 18", "18"),
    (["gsm8k_hash"], "#### 1,000\n", "1,000"),
    (["gsm8k_hash"], "####", None),
    (["gsm8k_hash"], "no marker", None),
]
ORDER = [
    (list(DEFAULT_POLICIES), "The answer is 3. \\boxed{4}", "4"),  # last_boxed comes first
    (["answer_is", "last_boxed"], "The answer is 3. \\boxed{4}", "3"),
    (list(DEFAULT_POLICIES), "#### 7", "7"),
    (list(DEFAULT_POLICIES), "nothing to find", None),
]


@pytest.mark.parametrize("policies, response, expected", LAST_BOXED + ANSWER_IS + GSM8K_HASH + ORDER)
def test_extract_answer(policies, response, expected):
    assert extract_answer(response, policies) == expected


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown extraction policy 'last_box'"):
        extract_answer("\\boxed{1}", ["last_box"])


def test_a_megabyte_of_unclosed_boxes_has_no_answer():
    # A 10^6-character response full of unclosed boxes must not cost quadratic time in the parent.
    text = "\\boxed{" * 150_000
    assert extract_answer(text) is None


# (reference, reference_format, expected gold string or None)
REFERENCES = [
    ("42", "answer", "42"),
    ("$\\frac{1}{2}$", "answer", r"\frac{1}{2}"),
    ("\\boxed{\\frac{1}{2}}", "answer", r"\frac{1}{2}"),
    ("\\(x+1\\)", "answer", "x+1"),
    ("  ", "answer", None),
    ("We get $x=2$, so the answer is $\\boxed{2}$.", "math_solution", "2"),
    ("No box in this solution.", "math_solution", None),
    ("9 * 2 = <<9*2=18>>18\n#### 18", "gsm8k", "18"),
    ("no marker", "gsm8k", None),
]


@pytest.mark.parametrize("reference, fmt, expected", REFERENCES)
def test_read_reference(reference, fmt, expected):
    assert read_reference(reference, fmt) == expected


def test_unknown_reference_format():
    with pytest.raises(ValueError, match="unknown reference_format"):
        read_reference("1", "latex")


# (raw answer, normalised text, is_text): MATH's conventions undone.
NORMALIZATION = [
    (r"\dfrac{1}{2}", r"\frac{1}{2}", False),
    (r"\tfrac12", r"\frac{1}{2}", False),
    (r"\left( 1, 2 \right)", "( 1, 2 )", False),
    (r"1,\!000", "1000", False),
    (r"10{,}000", "10000", False),
    (r"5\text{ cm}", "5", False),
    (r"12\mbox{ square units}^2", "12", False),
    ("18 dollars", "18", False),
    (r"30^\circ", "30", False),
    (r"30^{\circ}", "30", False),
    (r"10\%", "10", False),
    (r"\$18.90", "18.90", False),
    (r"x = 5", "5", False),
    (r"\sqrt2", r"\sqrt{2}", False),
    (".5", "0.5", False),
    (r"\text{(C)}", "c", True),
    (r"\text{Evelyn}", "evelyn", True),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", False),
    (r"x \rightarrow \infty", r"x \rightarrow \infty", False),  # \right inside \rightarrow survives
    (r"(1,000, 2)", "(1,000, 2)", False),  # commas inside a tuple are not thousands separators
]


@pytest.mark.parametrize("raw, text, is_text", NORMALIZATION)
def test_normalize_answer(raw, text, is_text):
    normalized = normalize_answer(raw)
    assert (normalized.text, normalized.is_text) == (text, is_text)
