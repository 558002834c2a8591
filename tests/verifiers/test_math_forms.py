"""Numbers and answers as people write them (issue 25): one table, positives and near misses per rule.

``FORMS`` is the rules table: each block is one extraction or normalisation rule of
``verifiers.math.normalize`` / ``verifiers.math.extract`` / ``verifiers.math.equivalence``, with rows
that must pass and near misses that must fail. The settings that make a rule a policy choice
(``decimal_comma``, ``percent``, ``numeric_tolerance``) have their own tables below. These run through
the real worker pool.
"""

from __future__ import annotations

import pytest

from verifiers.math import DEFAULT_NUMERIC_TOLERANCE, MathVerifier, MathVerifyConfig
from verifiers.math.extract import is_wrapped, last_math, read_answer_response
from verifiers.math.normalize import AnswerRules, normalize_answer

THIN, NBSP, NNBSP = "\u2009", "\u00a0", "\u202f"

# (rule, reference, response, response_format, expected verdict)
FORMS = [
    # -- digit grouping: thin, no-break and plain spaces, \, \! and commas between groups of three
    ("grouping", "1000000", f"1{THIN}000{THIN}000", "answer", "pass"),
    ("grouping", "25000", f"25{NBSP}000", "answer", "pass"),
    ("grouping", "25000", f"25{NNBSP}000", "answer", "pass"),
    ("grouping", "25000", "25 000", "answer", "pass"),
    ("grouping", "25000", r"25\,000", "answer", "pass"),
    ("grouping", "25000", r"25\!000", "answer", "pass"),
    ("grouping", "25000", r"25{,}000", "answer", "pass"),
    ("grouping", "1234567.5", "1 234 567.5", "answer", "pass"),
    ("grouping", "#### 4200", r"so she pays \boxed{4\,200} dollars", "text", "pass"),
    ("grouping", "25000", "25 001", "answer", "fail"),            # a wrong digit in a grouped number
    ("grouping", "25000", r"25\,100", "answer", "fail"),
    ("grouping", "25000", "2 5000", "answer", "fail"),            # not groups of three: 2 times 5000
    ("grouping", "1000000", "1 000 00", "answer", "fail"),
    # -- decimal comma (auto): where no thousands reading fits
    ("decimal_comma", "3.5", "3,5", "answer", "pass"),
    ("decimal_comma", "0.125", "0,125", "answer", "pass"),        # a leading 0 is no thousands group
    ("decimal_comma", "1234.5", "1.234,5", "answer", "pass"),
    ("decimal_comma", "12.75", r"12{,}75", "answer", "pass"),
    ("decimal_comma", "1234", "1,234", "answer", "pass"),         # the thousands reading fits: it is kept
    ("decimal_comma", "1.234", "1,234", "answer", "fail"),
    ("decimal_comma", "3.5", "3,6", "answer", "fail"),
    ("decimal_comma", "2, 5", "2,5", "answer", "pass"),           # against a list the comma separates
    ("decimal_comma", "2, 5", "2.5", "answer", "fail"),
    ("decimal_comma", "2,5", "2.5", "answer", "fail"),            # a reference's comma is never decimal (auto)
    # -- an answer inside a short text (answer format): the last math expression, as Math-Verify takes it
    ("wrapped", r"\frac{10}{9}", r"Answer: $\frac{10}{9}$", "answer", "pass"),
    ("wrapped", "18", "The total is 18.", "answer", "pass"),
    ("wrapped", "18", "The total is 18 dollars.", "answer", "pass"),
    ("wrapped", r"\frac{1}{2}", r"So the probability is \(\frac{1}{2}\).", "answer", "pass"),
    ("wrapped", "7", r"so the answer is \boxed{7}.", "answer", "pass"),
    ("wrapped", r"(1, 2]", r"The solution set is $(1, 2]$.", "answer", "pass"),
    ("wrapped", r"\frac{10}{9}", r"Answer: $\frac{9}{10}$", "answer", "fail"),
    ("wrapped", "18", "The total is 19.", "answer", "fail"),
    ("wrapped", "18", "We first get 18, then subtract 2 to get 16.", "answer", "fail"),  # the last one counts
    ("wrapped", "3", r"We get $x = 3$ and then $y = 5$.", "answer", "fail"),
    ("wrapped", "The answer is $5$.", "5", "answer", "pass"),     # a wrapped reference reads the same way
    # -- mixed numbers: a whole number and a proper fraction
    ("mixed_number", r"\frac{3}{2}", "1 1/2", "answer", "pass"),
    ("mixed_number", r"\frac{11}{4}", r"2\frac{3}{4}", "answer", "pass"),
    ("mixed_number", r"\frac{11}{4}", r"2 \tfrac34", "answer", "pass"),
    ("mixed_number", r"-\frac{7}{3}", "-2 1/3", "answer", "pass"),
    ("mixed_number", "#### 4.5", "#### 4 1/2", "text", "pass"),
    ("mixed_number", r"\frac{1}{2}", "1 1/2", "answer", "fail"),  # not 1 times 1/2
    ("mixed_number", r"\frac{3}{2}", "1 1/3", "answer", "fail"),
    ("mixed_number", r"\frac{7}{3}", "-2 1/3", "answer", "fail"),
    # -- percent against fraction (percent=either)
    ("percent", "0.1", r"10\%", "answer", "pass"),
    ("percent", r"10\%", "0.1", "answer", "pass"),
    ("percent", r"10\%", "10", "answer", "pass"),
    ("percent", r"25\%", r"\frac{1}{4}", "answer", "pass"),
    ("percent", "0.075", "7.5 percent", "answer", "pass"),
    ("percent", r"10\%", "0.01", "answer", "fail"),
    ("percent", "10", "0.1", "answer", "fail"),                   # no percent sign on either side
    ("percent", r"5\%", "0.5", "answer", "fail"),
    # -- a decimal approximation of a symbolic reference, at the precision it states
    ("approximation", r"40\pi", "125.663", "answer", "pass"),    # truncated
    ("approximation", r"40\pi", "125.664", "answer", "pass"),    # rounded
    ("approximation", r"\sqrt 3", "1.732", "answer", "pass"),
    ("approximation", r"\frac{\sqrt{2}}{2}", "0.7071067811865476", "answer", "pass"),  # a float printed in full
    ("approximation", r"\frac{1}{3}", "0.333333", "answer", "pass"),
    ("approximation", r"\frac{2}{3}", "0.6666666", "answer", "pass"),      # truncated
    ("approximation", r"\frac{1}{3}", "0.3333", "answer", "fail"),         # a fraction needs 6 decimals
    ("approximation", r"2\pi", r"\approx 6.2832", "answer", "pass"),
    ("approximation", r"40\pi", "125.665", "answer", "fail"),    # neither rounded nor truncated
    ("approximation", r"\sqrt 3", "1.742", "answer", "fail"),    # off in the third significant digit
    ("approximation", r"\sqrt 3", "1.733", "answer", "fail"),
    ("approximation", r"2\pi", "6.28", "answer", "fail"),        # 0.01 / 6.28 is coarser than 1e-3
    ("approximation", r"\pi", "3.14", "answer", "fail"),
    ("approximation", r"\frac{1}{3}", "0.33", "answer", "fail"),
    ("approximation", r"\frac{1}{33}", "0.0303033", "answer", "fail"),  # Math-Verify's 6-decimal rounding passed it
    ("approximation", "0.375", "0.38", "answer", "fail"),        # a decimal reference is matched exactly
    ("approximation", "125", "125.0001", "answer", "fail"),      # so is an integer
    # -- Math-Verify's known false passes stay fails
    ("known_false_pass", r"\pm 2021", "2021", "answer", "fail"),
    ("known_false_pass", "\u00b12021", "2021", "answer", "fail"),
    ("known_false_pass", "2021", r"\pm 2021", "answer", "fail"),
    ("known_false_pass", r"1-\frac{1}{e}", r"1+\frac{1}{e}", "answer", "fail"),
    ("known_false_pass", "1-1/e", "1+1/e", "answer", "fail"),
    ("known_false_pass", r"1 - \frac{1}{\mathrm{e}}", r"1 + \frac{1}{\mathrm{e}}", "answer", "fail"),
    ("known_false_pass", "3x-y+13=0", "3x+4y+14=0", "answer", "fail"),  # two equations, both "= 0"
    ("known_false_pass", "b=0", "b+1=0", "answer", "fail"),
    ("known_false_pass", r"\frac{1}{2^{99}}", r"\frac{1}{2^{98}}", "answer", "fail"),  # chopped to 0 by evalf
    ("known_false_pass", r"\frac{1}{2004!}", r"\frac{1}{2006!}", "answer", "fail"),
    # -- forms around the answer that were already read, kept
    ("kept", "y = 2x+3", "2x - y + 3 = 0", "answer", "pass"),
    ("kept", r"(1, 2]", r"1 < x \leq 2", "answer", "pass"),
    ("kept", "5", "5 m", "answer", "pass"),                        # a one-letter unit after a number
    ("kept", "5m", "5 m", "answer", "pass"),
    ("kept", "300000", "3e5", "answer", "pass"),
    ("kept", "-5", "\u22125", "answer", "pass"),                   # the Unicode minus sign
    ("kept", "2xy", "2xy", "answer", "pass"),
    ("kept", "-(ab + ac + bc)", "-ab - ac - bc", "answer", "pass"),
]


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier.from_options(workers=2) as v:
        yield v


@pytest.mark.parametrize("rule, reference, response, fmt, expected", FORMS,
                         ids=[f"{row[0]}-{i}" for i, row in enumerate(FORMS)])
def test_forms_table(verifier, rule, reference, response, fmt, expected):
    reference_format = "gsm8k" if reference.startswith("####") else "answer"
    verdict = verifier.verify_one(reference, response, reference_format=reference_format, response_format=fmt)
    assert verdict.outcome.value == expected, verdict


def test_every_rule_has_positives_and_near_misses():
    by_rule: dict[str, set[str]] = {}
    for rule, *_, expected in FORMS:
        by_rule.setdefault(rule, set()).add(expected)
    rules = {rule: outcomes for rule, outcomes in by_rule.items() if rule not in ("known_false_pass", "kept")}
    assert len(rules) == 6 and all(outcomes == {"pass", "fail"} for outcomes in rules.values()), rules


# -- the settings: (options, reference, response, expected)
SETTINGS = [
    ({"decimal_comma": "never"}, "3.5", "3,5", "fail"),
    ({"decimal_comma": "never"}, "1234", "1,234", "pass"),
    ({"decimal_comma": "always"}, "1.234", "1,234", "pass"),
    ({"decimal_comma": "always"}, "1234", "1,234", "fail"),
    ({"decimal_comma": "always"}, "2.5", "2,5", "pass"),
    ({"percent": "number"}, "0.1", r"10\%", "fail"),
    ({"percent": "number"}, "10", r"10\%", "pass"),
    ({"percent": "fraction"}, "0.1", r"10\%", "pass"),
    ({"percent": "fraction"}, "10", r"10\%", "fail"),
    ({"percent": "fraction"}, r"10\%", "10", "fail"),
    ({"numeric_tolerance": 0}, r"\sqrt 3", "1.732", "fail"),
    ({"numeric_tolerance": 1e-4}, r"\sqrt 3", "1.732", "fail"),      # 0.001 / 1.732 = 5.8e-4 > 1e-4
    ({"numeric_tolerance": 1e-4}, r"\sqrt 3", "1.7321", "pass"),
    ({"numeric_tolerance": 1e-2}, r"2\pi", "6.28", "pass"),
    ({"numeric_tolerance": 1e-2}, r"2\pi", "6.29", "fail"),          # still rounded or truncated only
]


@pytest.mark.parametrize("options, reference, response, expected", SETTINGS)
def test_settings(options, reference, response, expected):
    with MathVerifier.from_options(workers=1, response_format="answer", **options) as v:
        assert v.verify_one(reference, response).outcome.value == expected


def test_settings_are_validated_with_their_choices():
    assert MathVerifyConfig().numeric_tolerance == DEFAULT_NUMERIC_TOLERANCE
    for options, message in (({"decimal_comma": "sometimes"}, "choose from auto, never, always"),
                             ({"percent": "half"}, "choose from either, number, fraction"),
                             ({"numeric_tolerance": 2}, r"numeric_tolerance must be a number in \[0, 1\)"),
                             ({"numeric_tolerance": "tight"}, "numeric_tolerance must be a number")):
        with pytest.raises(ValueError, match=message):
            MathVerifier.from_options(**options)
    assert MathVerifier.from_options(numeric_tolerance="1e-4").config.rules == AnswerRules(numeric_tolerance=1e-4)


def test_run_config_fields_reach_the_verifier():
    from rest_em.config import MathVerifierSection, load_config
    from verifiers.registry import get_verifier

    assert MathVerifierSection().numeric_tolerance == DEFAULT_NUMERIC_TOLERANCE
    cfg = load_config(None, overrides=["verifier.math.decimal_comma=never", "verifier.math.percent=fraction",
                                       "verifier.math.numeric_tolerance=0.0001"])
    verifier = get_verifier("math", **cfg.verifier.options("math"))
    assert verifier.config.rules == AnswerRules("never", "fraction", 1e-4)
    verifier.close()


def test_extracted_by_says_when_a_wrapper_was_read(verifier):
    wrapped = verifier.verify_one("18", "The total is 18.", response_format="answer")
    whole = verifier.verify_one("18", "18", response_format="answer")
    boxed = verifier.verify_one("18", r"So \boxed{18}.", response_format="answer")
    assert (wrapped.extracted_by, whole.extracted_by, boxed.extracted_by) == ("last_math", "whole_response", "last_boxed")


# -- the pure functions behind the rules
@pytest.mark.parametrize("text, wrapped", [
    (r"Answer: $\frac{10}{9}$", True), ("The total is 18.", True), ("Answer: 5", True), ("5 square units", True),
    (r"$1$ and $2$", True), (r"so \boxed{5}", True),
    ("x = 5", False), ("2xy", False), ("-(ab + ac + bc)", False), ("AB=9, CD=4", False), (r"\sin x + \cos x", False),
    (r"\text{Evelyn}", False), ("18 dollars", False), (r"\begin{pmatrix} 1 & 2 \end{pmatrix}", False),
    (r"x \in [1, 2] \cup [3, 4]", False), ("2 and 3", False), (r"\log_2 8", False),
])
def test_is_wrapped(text, wrapped):
    assert is_wrapped(text) is wrapped


@pytest.mark.parametrize("text, expected", [
    (r"Answer: $\frac{10}{9}$", (r"\frac{10}{9}", "last_math")),
    ("It is 10%.", (r"10\%", "last_math")),                  # the percent sign is kept for the percent rule
    ("The answer is 1 1/2 cups", ("1 1/2", "last_math")),
    (r"We have $1$ and $2$.", ("1, 2", "last_math")),        # several spans: one list, as Math-Verify sets them
    ("The total is 1 000 dollars.", ("1 000", "last_math")),
    (r"so \boxed{5}.", ("5", "last_boxed")),
    (r"\boxed{5}", ("5", "whole_response")),
    ("", None),
])
def test_read_answer_response(text, expected):
    assert read_answer_response(text) == expected


def test_last_math_returns_the_span_as_written():
    assert last_math(r"so the length is \(2\text{ cm}\)") == r"2\text{ cm}"   # our normaliser reads the unit
    assert last_math("no math here") is None


@pytest.mark.parametrize("raw, mode, text, percent", [
    (f"1{THIN}000{THIN}000", "never", "1000000", False),
    ("12 345.5", "never", "12345.5", False),
    ("1 123/456", "never", r"\frac{579}{456}", False),        # a mixed number, not grouping
    ("3,5", "auto", "3.5", False), ("1,234", "auto", "1234", False), ("1,234", "always", "1.234", False),
    ("1.000.000", "auto", "1000000", False), ("3,5", "never", "3,5", False),
    (r"10\%", "auto", "10", True), ("10 percent", "auto", "10", True), (r"x^2\%", "auto", "x^2", False),
    ("1.5e3", "auto", r"1.5 \times 10^{3}", False), (r"\approx 1.732", "auto", "1.732", False),
    ("\u00b12021", "auto", r"\pm 2021", False),
])
def test_normalize_number_forms(raw, mode, text, percent):
    normalized = normalize_answer(raw, mode)
    assert (normalized.text, normalized.percent) == (text, percent)
