"""Deciding whether two answers are equal, with Math-Verify (sympy underneath).

These functions run inside worker processes (``verifiers.workers``). Math-Verify's own timeout uses
``signal.alarm``; it is switched off here (``parsing_timeout=None``, ``timeout_seconds=None``)
because the deadline is enforced by the parent killing the worker, which also covers the time spent
outside Math-Verify's guarded sections (e.g. turning a huge sympy number into a string).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifiers.math.extract import WHOLE_RESPONSE, extract_with_policy, read_whole_answer
from verifiers.math.normalize import NormalizedAnswer, answers_match_as_text, normalize_answer
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


def parse_reference(reference: str, reference_format: str) -> ParsedReference | Verdict:
    """The parsed gold answer, or an ``error`` verdict saying why the reference is unusable."""
    raw = read_reference(reference, reference_format)
    if raw is None:
        where = {"math_solution": "no \\boxed{} in the solution", "gsm8k": "no '####' line"}.get(
            reference_format, "empty reference"
        )
        return Verdict.errored("unparseable_reference", f"{where} (reference_format={reference_format})")
    normalized = normalize_answer(raw)
    if not normalized.text:
        return Verdict.errored("unparseable_reference", f"reference {_quote(raw)} is empty after normalisation")
    if normalized.is_text:
        return ParsedReference(normalized, [])
    parsed = _parse(normalized)
    if not parsed:
        return Verdict.errored("unparseable_reference", f"Math-Verify could not parse reference {_quote(raw)}")
    return ParsedReference(normalized, parsed)


def answers_equivalent(reference: ParsedReference, candidate: NormalizedAnswer, string_shortcut: bool) -> bool:
    """Is ``candidate`` the same answer as ``reference``?"""
    from math_verify import verify

    if reference.normalized.is_text:
        return answers_match_as_text(reference.normalized, candidate)
    # Identical normalised strings are the same answer whatever sympy makes of them.
    if string_shortcut and candidate.text == reference.normalized.text:
        return True
    parsed = _parse(candidate)
    if not parsed:
        return False
    return bool(verify(reference.parsed, parsed, timeout_seconds=None))


@dataclass(frozen=True)
class CheckTask:
    """One item of work for a worker: everything needed, as plain picklable data."""

    reference: str
    response: str
    reference_format: str
    policies: tuple[str, ...]
    string_shortcut: bool = True
    response_format: str = "text"  # "answer": the whole response is the answer, nothing is extracted


def _extract(task: CheckTask) -> tuple[str, str] | None:
    """(answer, how it was found) from the response, or None."""
    if task.response_format == "answer":
        answer = read_whole_answer(task.response)
        return None if answer is None else (answer, WHOLE_RESPONSE)
    return extract_with_policy(task.response, task.policies)


def check(task: CheckTask) -> Verdict:
    """The verdict for one (reference, response) pair. Runs in a worker process."""
    policy: str | None = None
    try:
        reference = parse_reference(task.reference, task.reference_format)
        if isinstance(reference, Verdict):
            return reference
        extracted = _extract(task)
        if extracted is None:
            if task.response_format == "answer":
                return Verdict.failed("no_answer", "the response is empty (response_format=answer)")
            return Verdict.failed("no_answer", f"no answer found by policies {', '.join(task.policies)}")
        answer, policy = extracted
        candidate = normalize_answer(answer)
        if not candidate.text:
            return Verdict.failed("no_answer", f"the answer found by {policy} is empty after normalisation", policy)
        same = answers_equivalent(reference, candidate, task.string_shortcut)
    except (MemoryError, RecursionError) as exc:
        # A pathological answer (a huge number, deeply nested braces) exhausted the worker: the
        # model's output is at fault, so this is a fail like a timeout, not our error.
        return Verdict.failed("resource_limit", f"{type(exc).__name__} while checking the answer", policy)
    message = f"answer {_quote(answer)} ({policy}) vs reference {_quote(reference.normalized.text)}"
    if same:
        return Verdict.passed("correct", message, policy)
    return Verdict.failed("wrong_answer", message, policy)


def check_equivalent(pair: tuple[str, str]) -> bool:
    """Are two extracted answers the same answer? (for maj@k voting). Runs in a worker process."""
    first, second = pair
    try:
        reference = parse_reference(first, "answer")
        if isinstance(reference, Verdict):
            return False
        candidate = normalize_answer(second)
        return bool(candidate.text) and answers_equivalent(reference, candidate, string_shortcut=True)
    except (MemoryError, RecursionError):
        return False


@dataclass(frozen=True)
class EquivalenceTask:
    """Two extracted answers to compare (maj@k voting)."""

    first: str
    second: str


def run_task(task: CheckTask | EquivalenceTask) -> Verdict | bool:
    """The one function the worker pool runs: a verdict for a check, a bool for an equivalence."""
    if isinstance(task, EquivalenceTask):
        return check_equivalent((task.first, task.second))
    return check(task)
