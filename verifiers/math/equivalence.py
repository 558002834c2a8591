"""Deciding whether two answers are equal, with Math-Verify (sympy underneath).

These functions run inside worker processes (``verifiers.workers``). Math-Verify's own timeout uses
``signal.alarm``; it is switched off here (``parsing_timeout=None``, ``timeout_seconds=None``)
because the deadline is enforced by the parent killing the worker, which also covers the time spent
outside Math-Verify's guarded sections (e.g. turning a huge sympy number into a string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from verifiers.math.extract import WHOLE_RESPONSE, answer_is, extract_with_policy, last_math, read_answer_response
from verifiers.math.normalize import (
    AnswerRules,
    NormalizedAnswer,
    answers_match_as_text,
    is_plain_number,
    normalize_answer,
)
from verifiers.math.reference import read_reference
from verifiers.verdict import Verdict

# Verdict messages quote answers; a 10^6-character answer must not end up in every output row.
_QUOTE_CHARS = 120


def _quote(s: str) -> str:
    # Not repr(): its escaping doubles every backslash of the LaTeX once more in the JSON output.
    return "'" + (s if len(s) <= _QUOTE_CHARS else s[:_QUOTE_CHARS] + "...") + "'"


def warm_up() -> None:
    """Import Math-Verify and silence its timeout-disabled warnings; run once per worker at start-up."""
    import math_verify.grader
    import math_verify.parser
    from math_verify import parse, verify

    # Math-Verify warns once per process that its signal timeout is off; here that is by design.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    # The first parse builds Math-Verify's regexes and latex2sympy's grammar: pay that now, not
    # against the first item's deadline.
    verify(parse("$\\frac{1}{2}$", parsing_timeout=None), parse("$0.5$", parsing_timeout=None), timeout_seconds=None)


_LATEX_CONFIG: Any = None


def _parse(answer: NormalizedAnswer) -> list[Any]:
    global _LATEX_CONFIG
    from math_verify import ExprExtractionConfig, parse

    if _LATEX_CONFIG is None:
        _LATEX_CONFIG = _latex_config()

    # The answer is already isolated, so it is handed over as one math span; Math-Verify still
    # applies its own LaTeX normalisation (malformed operators, nits) on top of ours. Not its unit
    # removal: that strips any trailing "m", "t", "o", ... after a digit or a space, so "2 + m" would
    # read as "2 +" and "6t" as 6; verifiers.math.normalize strips the units of MATH's answers itself.
    return parse(
        f"${answer.text}$",
        extraction_config=[_LATEX_CONFIG, ExprExtractionConfig()],
        parsing_timeout=None,
    )


def _latex_config() -> Any:
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import LatexExtractionConfig

    return LatexExtractionConfig(
        boxed_match_priority=0,
        normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        ),
    )


@dataclass(frozen=True)
class ParsedReference:
    normalized: NormalizedAnswer
    parsed: list[Any]


def parse_reference(reference: str, reference_format: str, rules: AnswerRules | None = None) -> ParsedReference | Verdict:
    """The parsed gold answer, or an ``error`` verdict saying why the reference is unusable.

    In ``answer`` format a reference that is a short text around its answer is read like such a
    response (``verifiers.math.extract.read_answer_response``). A reference is read with a decimal
    comma only when ``rules.decimal_comma`` is ``always``
    (in ``auto`` a reference's ``2,5`` is a list of two answers, as in MATH).
    """
    rules = rules or AnswerRules()
    raw = read_reference(reference, reference_format)
    if raw is not None and reference_format == "answer":
        # A reference that is a short text around its answer ("The answer is $5$.") reads like a response.
        raw = (read_answer_response(reference) or (raw, WHOLE_RESPONSE))[0]
    if raw is None:
        where = {"math_solution": "no \\boxed{} in the solution", "gsm8k": "no '####' line"}.get(
            reference_format, "empty reference"
        )
        return Verdict.errored("unparseable_reference", f"{where} (reference_format={reference_format})")
    normalized = normalize_answer(raw, "always" if rules.decimal_comma == "always" else "never")
    if not normalized.text:
        return Verdict.errored("unparseable_reference", f"reference {_quote(raw)} is empty after normalisation")
    if normalized.is_text:
        return ParsedReference(normalized, [])
    parsed = _parse(normalized)
    if not parsed:
        return Verdict.errored("unparseable_reference", f"Math-Verify could not parse reference {_quote(raw)}")
    return ParsedReference(normalized, parsed)


def _is_list(text: str) -> bool:
    """A comma at the top level: several answers (``2, 5``), a tuple or a set, not one number."""
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth <= 1 and not re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
            return True
    return False


def normalize_candidate(answer: str, reference: ParsedReference, rules: AnswerRules) -> NormalizedAnswer:
    """The model's answer normalised; in ``auto`` its decimal comma is read only against a reference
    that is one value (against ``2, 5`` the response ``2,5`` is the same list)."""
    mode = rules.decimal_comma
    if mode == "auto" and _is_list(reference.normalized.text):
        mode = "never"
    candidate = normalize_answer(answer, mode)
    unit = _LETTER_UNIT.match(candidate.text)
    if unit and not re.search(r"[a-zA-Z]", reference.normalized.text):
        # "5 m" against a numeric reference: the letter is a unit, not a variable.
        return NormalizedAnswer(unit.group(1), percent=candidate.percent)
    return candidate


# A plain number, a space and a one-letter SI unit (metres, grams, seconds, litres, hours, newtons, ...).
_LETTER_UNIT = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s+[mgsLlhNJWVKA]$")


def _verify(gold: list[Any], parsed: list[Any]) -> bool:
    """Math-Verify's verdict, with an interval reference matched by an inequality (``1 < x \\leq 2``
    for ``(1, 2]``), and never two different exact numbers (see ``_exact_numbers_differ``)."""
    from math_verify import verify

    # float_rounding: Math-Verify's default (6 decimals) passed 0.0303033 for 1/33; a decimal against
    # an exact value is judged by ``approximates`` at the precision it states instead.
    if not parsed or not verify(gold, parsed, float_rounding=10, timeout_seconds=None, allow_set_relation_comp=True):
        return False
    return not _exact_numbers_differ(gold, parsed)


def _exact_numbers_differ(gold: list[Any], parsed: list[Any]) -> bool:
    """Are both answers exact numbers (no variable, no decimal) whose values differ?

    Math-Verify compares such numbers by ``(a - b).evalf(chop=True)``, which chops a difference
    below its working precision to zero: ``\\frac{1}{2^{99}}`` equalled ``\\frac{1}{2^{98}}`` and
    ``\\frac{1}{2004!}`` equalled ``\\frac{1}{2006!}``. Here the difference is measured relative
    to the values, at 40 significant digits.
    """
    import sympy

    a = next((x for x in gold if not isinstance(x, str)), None)
    b = next((x for x in parsed if not isinstance(x, str)), None)
    exact = [x for x in (a, b) if isinstance(x, sympy.Expr) and not x.free_symbols and not x.atoms(sympy.Float)]
    if len(exact) != 2:
        return False
    try:
        va, vb = sympy.N(a, 40), sympy.N(b, 40)
        if not (va.is_number and vb.is_number) or va.has(sympy.zoo, sympy.nan) or vb.has(sympy.zoo, sympy.nan):
            return False
        scale = max(abs(va), abs(vb))
        if scale == 0:
            return False
        return bool(abs(sympy.N(a - b, 40)) > scale * sympy.Float("1e-30"))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return False


def _percent_readings(answer: NormalizedAnswer) -> list[NormalizedAnswer]:
    """``10`` from ``10\\%`` also as ``\\frac{10}{100}``."""
    return [NormalizedAnswer(f"\\frac{{{answer.text}}}{{100}}")] if answer.percent and is_plain_number(answer.text) else []


_DECIMAL = re.compile(r"^([-+]?)(\d*)\.(\d+)$")


# A fraction without a finite decimal expansion (1/3) is approximated by a decimal of at least this
# many decimals (Math-Verify's own float_rounding): 0.333333 is 1/3, 0.3333 is not.
RATIONAL_MIN_DECIMALS = 6


def approximates(reference: ParsedReference, candidate: NormalizedAnswer, tolerance: float) -> bool:
    """Is ``candidate`` a decimal approximation of a symbolic reference at the precision it states?

    The reference must be a real number without a finite decimal expansion (``40\\pi``, ``\\sqrt{3}``,
    ``\\frac{1}{3}``; never an integer, a terminating fraction or a decimal: those are matched exactly;
    a fraction needs ``RATIONAL_MIN_DECIMALS`` decimals);
    the candidate must be that value rounded or truncated to the decimals it writes
    (``125.664`` or ``125.663`` for 125.6637...), and one unit of its last decimal at most ``tolerance``
    of the value (so ``6.28`` for ``2\\pi`` is too coarse at 1e-3: 0.01 / 6.28 = 1.6e-3).
    """
    m = _DECIMAL.match(candidate.text)
    if tolerance <= 0 or not m:
        return False
    from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

    import sympy

    for expr in reference.parsed:
        if not isinstance(expr, sympy.Expr) or expr.free_symbols or isinstance(expr, sympy.Float):
            continue
        if expr.atoms(sympy.Float):
            continue  # a reference written as a decimal is matched exactly
        try:
            value = sympy.N(expr, 40)
            if not value.is_real or value == 0:
                continue
            if expr.is_rational:
                exact_q = sympy.nsimplify(expr.doit())
                if isinstance(exact_q, sympy.Rational) and _terminates(exact_q):
                    continue
                if len(m.group(3)) < RATIONAL_MIN_DECIMALS:
                    return False  # 0.3333 is not 1/3; 0.333333 is, as Math-Verify rounds to 6 decimals
            exact = Decimal(str(value))
        except (TypeError, ValueError, ArithmeticError):
            continue
        decimals = len(m.group(3))
        unit = Decimal(1).scaleb(-decimals)
        if unit / abs(exact) > Decimal(str(tolerance)):
            return False
        written = Decimal(candidate.text)
        candidates = {exact.quantize(unit, rounding=r) for r in (ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_DOWN)}
        # 10+ decimals: a binary float printed in full (0.7071067811865476) may be off by a unit or two.
        return written in candidates or (decimals >= 10 and abs(written - exact) <= 2 * unit)
    return False


def _terminates(q: Any) -> bool:
    den = int(q.q)
    for p in (2, 5):
        while den % p == 0:
            den //= p
    return den == 1


def answers_equivalent(reference: ParsedReference, candidate: NormalizedAnswer, string_shortcut: bool,
                       rules: AnswerRules | None = None) -> str | None:
    """How ``candidate`` is the same answer as ``reference`` (``equal``, ``percent``,
    ``approximation``), or None when it is not."""
    rules = rules or AnswerRules()
    if reference.normalized.is_text:
        return "equal" if answers_match_as_text(reference.normalized, candidate) else None
    # With percent=fraction, 10% is 0.1 only: the bare number no longer matches the other side.
    literal = not (rules.percent == "fraction" and reference.normalized.percent != candidate.percent)
    # Identical normalised strings are the same answer whatever sympy makes of them.
    if literal and string_shortcut and candidate.text == reference.normalized.text:
        return "equal"
    if _DECIMAL.match(candidate.text) and approximates(reference, candidate, rules.numeric_tolerance):
        return "approximation"  # checked first: cheaper than Math-Verify's symbolic comparison
    parsed = _parse(candidate)
    gold = reference.parsed
    if "=" in candidate.text and reference.normalized.relation is not None:
        # The reference "b = 0" was read as "0"; an equation such as "b + 1 = 0" is compared with the
        # whole relation, not by its right-hand side (Math-Verify unwraps that, and 0 = 0).
        gold = _parse(NormalizedAnswer(reference.normalized.relation)) or gold
    if literal and _verify(gold, parsed):
        return "equal"
    if rules.percent != "number":
        for reading in _percent_readings(candidate):
            if _verify(reference.parsed, _parse(reading)):
                return "percent"
        for reading in _percent_readings(reference.normalized):
            if _verify(_parse(reading), parsed):
                return "percent"
    return None


@dataclass(frozen=True)
class CheckTask:
    """One item of work for a worker: everything needed, as plain picklable data."""

    reference: str
    response: str
    reference_format: str
    policies: tuple[str, ...]
    string_shortcut: bool = True
    # "answer": the response is the answer, or a short text around it (verifiers.math.extract.read_answer_response)
    response_format: str = "text"
    rules: AnswerRules = AnswerRules()


def _extract(task: CheckTask) -> tuple[str, str] | None:
    """(answer, how it was found) from the response, or None."""
    if task.response_format == "answer":
        return read_answer_response(task.response)
    return extract_with_policy(task.response, task.policies)


def check(task: CheckTask) -> Verdict:
    """The verdict for one (reference, response) pair. Runs in a worker process."""
    policy: str | None = None
    try:
        reference = parse_reference(task.reference, task.reference_format, task.rules)
        if isinstance(reference, Verdict):
            return reference
        extracted = _extract(task)
        if extracted is None:
            if task.response_format == "answer":
                return Verdict.failed("no_answer", "the response is empty (response_format=answer)")
            return Verdict.failed("no_answer", f"no answer found by policies {', '.join(task.policies)}")
        answer, policy = extracted
        candidate = normalize_candidate(answer, reference, task.rules)
        if not candidate.text:
            return Verdict.failed("no_answer", f"the answer found by {policy} is empty after normalisation", policy)
        if (task.response_format == "answer" and policy == WHOLE_RESPONSE and not reference.normalized.is_text
                and not _parse(candidate)):
            # The whole response is not one parseable answer: take its last math expression.
            found = last_math(task.response)
            if found is not None and found.strip() != answer.strip():
                answer, policy = found, "last_math"
                candidate = normalize_candidate(answer, reference, task.rules)
        if reference.normalized.is_text and policy in (WHOLE_RESPONSE, "last_math") and task.response_format == "answer":
            # A word answer in a sentence ("The answer is Evelyn."): the phrase after "the answer is".
            phrase = answer_is(task.response)
            if phrase is not None:
                answer, policy = phrase, "answer_is"
                candidate = normalize_candidate(answer, reference, task.rules)
        how = answers_equivalent(reference, candidate, task.string_shortcut, task.rules)
    except (MemoryError, RecursionError) as exc:
        # A pathological answer (a huge number, deeply nested braces) exhausted the worker: the
        # model's output is at fault, so this is a fail like a timeout, not our error.
        return Verdict.failed("resource_limit", f"{type(exc).__name__} while checking the answer", policy)
    message = f"answer {_quote(answer)} ({policy}) vs reference {_quote(reference.normalized.text)}"
    if how is not None:
        return Verdict.passed("correct", message if how == "equal" else f"{message}: equal as {how}", policy)
    return Verdict.failed("wrong_answer", message, policy)


def check_equivalent(pair: tuple[str, str], rules: AnswerRules | None = None) -> bool:
    """Are two extracted answers the same answer? (for maj@k voting). Runs in a worker process."""
    first, second = pair
    rules = rules or AnswerRules()
    try:
        reference = parse_reference(first, "answer", rules)
        if isinstance(reference, Verdict):
            return False
        candidate = normalize_candidate(second, reference, rules)
        return bool(candidate.text) and answers_equivalent(reference, candidate, True, rules) is not None
    except (MemoryError, RecursionError):
        return False


@dataclass(frozen=True)
class EquivalenceTask:
    """Two extracted answers to compare (maj@k voting)."""

    first: str
    second: str
    rules: AnswerRules = AnswerRules()


def run_task(task: CheckTask | EquivalenceTask) -> Verdict | bool:
    """The one function the worker pool runs: a verdict for a check, a bool for an equivalence."""
    if isinstance(task, EquivalenceTask):
        return check_equivalent((task.first, task.second), task.rules)
    return check(task)
