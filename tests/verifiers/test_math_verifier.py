"""Tables of (reference, response, expected verdict), grouped by where each case came from.

Every misgrade found becomes a row here (Math-Verify's own tests are tables of gold, prediction,
verdict). These run through the real worker pool.
"""

from __future__ import annotations

import time

import pytest

from verifiers.io import InputError
from verifiers.math import MathItem, MathVerifier, MathVerifyConfig
from verifiers.registry import get_verifier
from verifiers.verdict import Outcome


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier.from_options(workers=2) as v:
        yield v


# MATH's conventions: the reference is written as in MATH, the response as a model might write it.
MATH_CONVENTIONS = [
    (r"\dfrac{1}{2}", r"\boxed{\frac{1}{2}}", "pass"),
    (r"\frac{1}{2}", r"\boxed{\tfrac12}", "pass"),
    (r"\frac{1}{2}", r"\boxed{0.5}", "pass"),
    (r"\frac{1}{2}", r"\boxed{1/2}", "pass"),
    (r"\frac{1}{3}", r"\boxed{0.33}", "fail"),
    (r"-\frac{1}{2}", r"\boxed{-\dfrac{1}{2}}", "pass"),
    (r"\left( 1, 2 \right)", r"\boxed{(1,2)}", "pass"),
    (r"(1, 2)", r"\boxed{(2, 1)}", "fail"),  # tuples are ordered
    (r"\{1, 2\}", r"\boxed{\{2, 1\}}", "pass"),  # sets are not
    (r"1,\!000", r"\boxed{1000}", "pass"),
    (r"10{,}000", "So the answer is 10,000.", "pass"),
    (r"5\text{ cm}", r"\boxed{5}", "pass"),
    (r"5", r"\boxed{5\text{ cm}}", "pass"),
    (r"5\text{ cm}", r"\boxed{6\text{ cm}}", "fail"),
    (r"\text{(C)}", r"\boxed{C}", "pass"),
    (r"\text{(C)}", r"\boxed{\text{(D)}}", "fail"),
    (r"\text{Evelyn}", r"\boxed{\text{Evelyn}}", "pass"),
    (r"\text{Evelyn}", r"\boxed{\text{Evelny}}", "fail"),  # sympy alone would see equal products of symbols
    (r"30^\circ", r"\boxed{30}", "pass"),
    (r"30", r"\boxed{30^{\circ}}", "pass"),
    (r"10\%", r"\boxed{10}", "pass"),
    (r"\$18.90", r"\boxed{18.9}", "pass"),
    (r"x = 5", r"\boxed{5}", "pass"),
    (r"5", r"\boxed{x=5}", "pass"),
    (r"[-2, 3)", r"\boxed{[-2,3)}", "pass"),
    (r"[-2, 3)", r"\boxed{(-2,3)}", "fail"),  # open and closed ends differ
    (r"(-\infty, 3] \cup [5, \infty)", r"\boxed{(-\infty,3]\cup[5,\infty)}", "pass"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", "pass"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\boxed{\begin{pmatrix}2\\1\end{pmatrix}}", "fail"),
    (r"2\pi", r"\boxed{2 \pi}", "pass"),
    (r"2\pi", r"\boxed{6.28}", "fail"),  # a rounded pi is not pi
    (r"\sqrt{2}", r"\boxed{\sqrt2}", "pass"),
    (r"2\sqrt{2}", r"\boxed{\sqrt{8}}", "pass"),
    (r"\frac{\sqrt{3}}{3}", r"\boxed{\frac{1}{\sqrt{3}}}", "pass"),
    (r"x^2+2x+1", r"\boxed{(x+1)^2}", "pass"),
    (r"100", r"\boxed{10^2}", "pass"),
    (r"10^{10}", r"\boxed{10000000000}", "pass"),
    (r"\frac{5}{2}", r"\boxed{2\frac{1}{2}}", "pass"),  # a mixed number
    (r"x \in (1, 2)", r"\boxed{(1,2)}", "pass"),
    (r"\frac{\pi}{4}", r"\boxed{45^\circ}", "fail"),  # degrees are dropped, not converted to radians
    (r"\text{east}", "The answer is East.", "pass"),
    (r"4", r"\boxed{\mathbf{4}}", "pass"),
    (r"12", "The answer is 12 km.", "pass"),
]

# GSM8K: the reference is GSM8K's answer field (reference_format="gsm8k").
GSM8K = [
    ("9 * 2 = <<9*2=18>>18\n#### 18", "She makes $18 a day.\n#### 18", "pass"),
    ("#### 1000", "#### 1,000", "pass"),
    ("#### 18", "The answer is $18.", "pass"),
    ("#### 18", "The answer is 18 dollars.", "pass"),
    ("#### 18", "#### 17", "fail"),
    ("#### 5", "I do not know.", "fail"),
]

# Adversarial responses and misgrades found while building the verifier.
ADVERSARIAL = [
    ("3", r"First \boxed{2}; wait, that is wrong: \boxed{3}", "pass"),  # the last box is the answer
    ("2", r"First \boxed{2}; wait, that is wrong: \boxed{3}", "fail"),
    ("12", r"\boxed{1}2", "fail"),
    ("42", r"\boxed{ 42 }", "pass"),
    ("2", r"\boxed{2, 3}", "fail"),  # hedging over several answers is not the answer
    ("1", r"\boxed{}", "fail"),
    ("1", r"\boxed{1", "fail"),  # unclosed: no answer
    ("0", r"\boxed{0.0000001}", "fail"),
    ("1", "The answer is one.", "fail"),
    ("7", r"\boxed{7 \text{ and } 8}", "fail"),
    ("5", r"\boxed{5}\boxed{6}", "fail"),
]

# Misgrades found by the metamorphic suite (verifiers.math.metamorphic, benchmarks/bench_math_accuracy.py).
METAMORPHIC_FIXES = [
    # Math-Verify's unit removal read a trailing variable as a unit: "2 + m" as "2 +", "6t" as 6.
    ("m+2", r"\boxed{2 + m}", "pass"),
    ("6t - 5", r"\boxed{-5 + 6t}", "pass"),
    ("9c+6", r"\boxed{6 + 9c}", "pass"),
    ("6t", r"\boxed{6}", "fail"),
    ("2k", r"\boxed{2}", "fail"),
    ("2 + m", r"\boxed{2}", "fail"),
    # \frac \pi4 (MATH's shorthand) was read as \frac{\}{p}i4: every sum with it parsed as its last terms.
    (r"\frac \pi4 + 2 - \sqrt2", r"\boxed{\frac{\pi}{4} + 2 - \sqrt{2}}", "pass"),
    (r"\frac \pi4 + 2 - \sqrt2", r"\boxed{-(\frac \pi4 + 2 - \sqrt2)}", "fail"),
    (r"\frac \pi4 + 2 - \sqrt2", r"\boxed{2 - \sqrt2}", "fail"),
    (r"\frac ab", r"\boxed{\frac{a}{b}}", "pass"),
]


@pytest.mark.parametrize(
    "reference, response, expected",
    [pytest.param(*case, id=f"math-{i}") for i, case in enumerate(MATH_CONVENTIONS)]
    + [pytest.param(*case, id=f"adversarial-{i}") for i, case in enumerate(ADVERSARIAL)]
    + [pytest.param(*case, id=f"metamorphic-{i}") for i, case in enumerate(METAMORPHIC_FIXES)],
)
def test_answer_tables(verifier, reference, response, expected):
    verdict = verifier.verify_one(reference, response)
    assert verdict.outcome.value == expected, verdict


@pytest.mark.parametrize("reference, response, expected", GSM8K, ids=[f"gsm8k-{i}" for i in range(len(GSM8K))])
def test_gsm8k_table(verifier, reference, response, expected):
    verdict = verifier.verify_one(reference, response, reference_format="gsm8k")
    assert verdict.outcome.value == expected, verdict


def test_batch_keeps_order_and_ids(verifier):
    items = [MathItem(f"p{i}", str(i), f"\\boxed{{{i if i % 3 else i + 1}}}") for i in range(40)]
    verdicts = verifier.verify_batch(items)
    assert [v.is_pass for v in verdicts] == [bool(i % 3) for i in range(40)]


# (reference, reference_format, response, outcome, reason): every verdict reason the verifier gives.
REASONS = [
    ("4", "answer", r"\boxed{4}", "pass", "correct"),
    ("4", "answer", r"\boxed{5}", "fail", "wrong_answer"),
    ("4", "answer", "I give up.", "fail", "no_answer"),
    ("", "answer", r"\boxed{4}", "error", "unparseable_reference"),
    ("The solution has no box.", "math_solution", r"\boxed{4}", "error", "unparseable_reference"),
    ("no marker", "gsm8k", "#### 4", "error", "unparseable_reference"),
    ("$$", "answer", r"\boxed{4}", "error", "unparseable_reference"),
]


@pytest.mark.parametrize("reference, fmt, response, outcome, reason", REASONS)
def test_verdict_reasons(verifier, reference, fmt, response, outcome, reason):
    verdict = verifier.verify_one(reference, response, reference_format=fmt)
    assert (verdict.outcome.value, verdict.reason) == (outcome, reason), verdict


def test_unparseable_reference_never_passes(verifier):
    # Even a response that repeats the broken reference must not pass: the error is ours to report.
    verdict = verifier.verify_one("no box", "no box", reference_format="math_solution")
    assert verdict.outcome is Outcome.ERROR


def test_equivalent_batch_for_voting(verifier):
    pairs = [("1/2", "0.5"), ("2", "3"), (r"\frac{1}{2}", r"\dfrac12"), (r"\text{Evelyn}", "Evelyn"), ("x", "")]
    assert verifier.equivalent_batch(pairs) == [True, False, True, True, False]


PATHOLOGICAL = [
    ("1", r"\boxed{2^{2^{2^{2^{2^{100}}}}}}"),
    ("1", r"\boxed{" + "1+" * 500_000 + "1}"),  # 10^6 characters of LaTeX
    ("1", r"\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}"),  # deeply nested braces
    ("1", r"\boxed{" + r"\frac{1}{" * 5_000 + "2" + "}" * 5_000 + "}"),
    ("1", r"\boxed{9^{9^{9^{9}}}!}"),
]


@pytest.fixture(scope="module")
def quick_verifier():
    # A shorter limit than the default keeps the suite fast; the bound checked is relative to it.
    with MathVerifier.from_options(workers=2, timeout_s=2.0) as v:
        yield v


# pytest-timeout turns a hung pool into a failure instead of a hung test run.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("reference, response", PATHOLOGICAL, ids=[f"patho-{i}" for i in range(len(PATHOLOGICAL))])
def test_pathological_inputs_fail_within_twice_the_timeout(quick_verifier, reference, response):
    start = time.monotonic()
    verdict = quick_verifier.verify_one(reference, response)
    elapsed = time.monotonic() - start
    assert verdict.outcome is Outcome.FAIL, verdict
    assert verdict.reason in {"timeout", "wrong_answer", "resource_limit", "no_answer"}, verdict
    assert elapsed < 2 * quick_verifier.config.timeout_s, f"{elapsed:.1f} s"
    # The pool is still usable afterwards (a killed worker was replaced).
    assert quick_verifier.verify_one("2", r"\boxed{2}").is_pass


@pytest.mark.timeout(60)
def test_exponent_tower_times_out_under_the_default_limit(verifier):
    assert verifier.config.timeout_s == MathVerifyConfig().timeout_s
    start = time.monotonic()
    verdict = verifier.verify_one("1", r"\boxed{2^{2^{2^{2^{2^{100}}}}}}")
    elapsed = time.monotonic() - start
    assert (verdict.outcome.value, verdict.reason) == ("fail", "timeout"), verdict
    assert elapsed < 2 * verifier.config.timeout_s


@pytest.mark.timeout(60)
def test_pathological_items_do_not_hold_up_a_batch(quick_verifier):
    items = [MathItem("slow", "1", PATHOLOGICAL[0][1])] + [MathItem(i, str(i), f"\\boxed{{{i}}}") for i in range(20)]
    verdicts = quick_verifier.verify_batch(items)
    assert verdicts[0].reason == "timeout"
    assert all(v.is_pass for v in verdicts[1:])


BAD_ROWS = [
    ({"reference": "1", "response": "1"}, "missing key 'id'"),
    ({"id": 1, "response": "1"}, "missing key 'reference'"),
    ({"id": 1, "reference": "1"}, "missing key 'response'"),
    ({"id": 1.5, "reference": "1", "response": "1"}, "'id' must be str or int, got float"),
    ({"id": True, "reference": "1", "response": "1"}, "'id' must be str or int, got bool"),
    ({"id": 1, "reference": 1, "response": "1"}, "'reference' must be str, got int"),
    ({"id": 1, "reference": "1", "response": None}, "'response' must be str, got NoneType"),
    ({"id": 1, "reference": "1", "response": "1", "reference_format": "latex"}, "unknown reference_format 'latex'"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_parse_item_says_where_and_what(row, message):
    verifier = MathVerifier()  # parse_item needs no workers
    with pytest.raises(InputError) as info:
        verifier.parse_item(row, where="in.jsonl:7")
    assert str(info.value).startswith("in.jsonl:7: ")
    assert message in str(info.value)


def test_parse_item_accepts_a_good_row():
    row = {"id": "a", "reference": "1", "response": "2", "reference_format": "gsm8k", "extra": 1}
    assert MathVerifier().parse_item(row, "x") == MathItem("a", "1", "2", "gsm8k")
    row["response_format"] = "answer"
    assert MathVerifier().parse_item(row, "x") == MathItem("a", "1", "2", "gsm8k", "answer")


def test_parse_item_refuses_an_unknown_response_format():
    row = {"id": "a", "reference": "1", "response": "2", "response_format": "bare"}
    with pytest.raises(InputError, match=r"^in.jsonl:4: unknown response_format 'bare'; choose from text, answer"):
        MathVerifier().parse_item(row, "in.jsonl:4")


# (reference, response, response_format, outcome, reason, extracted_by)
RESPONSE_FORMATS = [
    (r"\frac{1}{2}", r"\dfrac{1}{2}", "answer", "pass", "correct", "whole_response"),
    (r"\frac{1}{2}", r"$0.5$", "answer", "pass", "correct", "whole_response"),
    (r"\frac{1}{2}", r"\(\frac12\)", "answer", "pass", "correct", "whole_response"),
    (r"\frac{1}{2}", r"\boxed{1/2}", "answer", "pass", "correct", "whole_response"),
    (r"(1, 2)", r"\left( 1, 2 \right)", "answer", "pass", "correct", "whole_response"),
    (r"\frac{1}{2}", r"\frac{1}{3}", "answer", "fail", "wrong_answer", "whole_response"),
    ("5", "", "answer", "fail", "no_answer", None),
    ("5", "  ", "answer", "fail", "no_answer", None),
    # text: a bare answer is no answer for the default policies...
    (r"\frac{1}{2}", r"\dfrac{1}{2}", "text", "fail", "no_answer", None),
    ("5", r"so \boxed{5}", "text", "pass", "correct", "last_boxed"),
    ("5", "The answer is 5.", "text", "pass", "correct", "answer_is"),
    ("5", "#### 5", "text", "pass", "correct", "gsm8k_hash"),
]


@pytest.mark.parametrize("reference, response, fmt, outcome, reason, extracted_by", RESPONSE_FORMATS)
def test_response_format_per_item_and_extracted_by(verifier, reference, response, fmt, outcome, reason, extracted_by):
    verdict = verifier.verify_one(reference, response, response_format=fmt)
    assert (verdict.outcome.value, verdict.reason, verdict.extracted_by) == (outcome, reason, extracted_by), verdict
    if extracted_by:
        assert verdict.to_dict()["extracted_by"] == extracted_by
    else:
        assert "extracted_by" not in verdict.to_dict()


def test_response_format_option_is_the_default_for_items_without_one():
    with MathVerifier.from_options(workers=1, response_format="answer") as v:
        items = [MathItem("a", "7", "7"), MathItem("b", "7", r"so \boxed{7}", response_format="text"),
                 MathItem("c", "7", "so 7", response_format="answer"), MathItem("d", "7", "7 7", response_format="answer")]
        # "so 7" is a short text around the answer: its last math expression is read (issue 25)
        assert [(x.outcome.value, x.extracted_by) for x in v.verify_batch(items)] == [
            ("pass", "whole_response"), ("pass", "last_boxed"), ("pass", "last_math"), ("fail", "whole_response")]
    with pytest.raises(ValueError, match="unknown response_format 'bare'"):
        MathVerifier.from_options(response_format="bare")


# last_math: the last math span of free text, by Math-Verify's own extraction (off by default).
LAST_MATH = [
    ("5", "We get $x = 3$ and then $y = 5$.", "pass"),
    ("3", "We get $x = 3$ and then $y = 5$.", "fail"),
    (r"\sqrt{2}", r"so the length is \(\sqrt{2}\) units", "pass"),
    ("42", "The result is 42 apples.", "pass"),
    ("5", r"Some $\frac{1}{2}$ and a \boxed{5}", "pass"),     # last_boxed comes first
    ("5", "no math at all", "fail"),
]


@pytest.mark.parametrize("reference, response, expected", LAST_MATH)
def test_last_math_policy(reference, response, expected, last_math_verifier):
    verdict = last_math_verifier.verify_one(reference, response)
    assert verdict.outcome.value == expected, verdict


@pytest.fixture(scope="module")
def last_math_verifier():
    with MathVerifier.from_options(workers=1, extraction_policies=["last_boxed", "answer_is", "last_math"]) as v:
        yield v


def test_last_math_is_off_by_default_and_says_who_found_the_answer(verifier, last_math_verifier):
    assert "last_math" not in MathVerifyConfig().extraction_policies
    assert verifier.verify_one("5", "We get $y = 5$.").reason == "no_answer"
    assert last_math_verifier.verify_one("5", "We get $y = 5$.").extracted_by == "last_math"


def test_from_options_and_registry():
    verifier = get_verifier("math", timeout_s=3, workers=1, extraction_policies=["gsm8k_hash"], chunk_size=None)
    assert verifier.config == MathVerifyConfig(timeout_s=3, workers=1, extraction_policies=("gsm8k_hash",))
    verifier.close()
    with pytest.raises(ValueError, match="did you mean 'timeout_s'"):
        MathVerifier.from_options(timeout=3)
    with pytest.raises(ValueError, match="unknown extraction policy"):
        MathVerifier.from_options(extraction_policies=["boxed"])
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        MathVerifier.from_options(timeout_s=0)
    with pytest.raises(ValueError, match="must be a list of names"):
        MathVerifier.from_options(extraction_policies="last_boxed")
    # the run config's verifier.math.extraction_policies / verifier.math.response_format
    verifier = get_verifier("math", extraction_policies=["last_boxed", "last_math"], response_format="answer")
    assert verifier.config.extraction_policies == ("last_boxed", "last_math")
    assert verifier.config.response_format == "answer"
    verifier.close()


def test_extraction_policies_are_honoured():
    with MathVerifier.from_options(workers=1, extraction_policies=["gsm8k_hash"]) as v:
        assert v.verify_one("4", r"\boxed{4}").reason == "no_answer"
        assert v.verify_one("4", "#### 4").is_pass
