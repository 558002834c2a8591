"""Named policies that pull a model's final answer out of its response text.

A policy is a function ``text -> str | None``; ``extract_answer`` tries an ordered list of them and
returns the first answer found. The names are what configs and the CLI use:

``last_boxed``   the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces), or ``\\boxed 5``
``answer_is``    the last "the answer is X" / "the final answer is X" / "final answer: X"
``gsm8k_hash``   the last "#### X" (GSM8K's answer marker)
``last_math``    a last resort for free text: the last math span (``$...$``, ``\\(...\\)``, ``\\[...\\]``,
                 a bare number or expression) as Math-Verify's own extraction finds it; not in the
                 pipeline's ``DEFAULT_POLICIES``, but in ``FREE_TEXT_POLICIES`` (``rest-em verify``'s default)

The first three policies are linear in the length of the text (no backtracking regexes), so a
10^6-character response costs milliseconds here. ``last_math`` runs Math-Verify's regexes, which can
be slower on long texts; like every check it runs in a worker with a wall-clock limit.

Response formats (``RESPONSE_FORMATS``) say how to read a response: ``text`` (extract the answer with
the policies) or ``answer`` (the whole response is the answer, read like a bare reference:
``$...$``, ``\\(...\\)`` and ``\\boxed{}`` allowed).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

Policy = Callable[[str], "str | None"]

# Commands whose braced (or space-separated) argument is the final answer, as in MATH's solutions.
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_MAX_BOX_TRIES = 4


def _match_braces(text: str, open_at: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_at``; escaped ``\\{`` / ``\\}`` do not count."""
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character: \{ and \} are literal braces of a set
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _box_argument(text: str, start: int, command: str) -> str | None:
    """The argument of the box command at ``start``, or None if it is malformed."""
    i = start + len(command)
    if i < len(text) and (text[i].isalpha()):
        return None  # \boxedfoo is another command, not \boxed
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] == "{":
        end = _match_braces(text, i)
        return None if end is None else text[i + 1 : end]
    if i == start + len(command):
        return None  # "\boxed5" is not the "\boxed 5" form; a space is required
    # "\boxed 5": the argument runs to the next whitespace or math delimiter.
    m = re.match(r"[^\s$]+", text[i:])
    return m.group(0) if m else None


def last_boxed(text: str) -> str | None:
    """The argument of the last well-formed ``\\boxed`` / ``\\fbox`` in ``text``."""
    positions = sorted(
        (m.start(), cmd) for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd), text)
    )
    # Only the last few are tried: a text full of unclosed boxes must not cost quadratic time.
    for start, cmd in reversed(positions[-_MAX_BOX_TRIES:]):
        arg = _box_argument(text, start, cmd)
        if arg is not None and arg.strip():
            return arg.strip()
    return None


_ANSWER_IS = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*:)\s*:?\s*", re.IGNORECASE)
# A sentence ends at a period followed by whitespace or the end of the text (not a decimal point).
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")


def strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def answer_is(text: str) -> str | None:
    """The phrase after the last "the answer is" (up to the end of its sentence)."""
    last = None
    for last in _ANSWER_IS.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end() :]
    if rest.startswith("$"):
        # "$...$" or "$$...$$": the math span is the answer even if it contains periods.
        fence = "$$" if rest.startswith("$$") else "$"
        close = rest.find(fence, len(fence))
        answer = rest[len(fence) : close] if close != -1 else rest[len(fence) :]
    else:
        end = _SENTENCE_END.search(rest)
        answer = rest[: end.start()] if end else rest
    answer = strip_math_delimiters(answer.strip().rstrip(".,;:!").strip())
    return answer or None


_HASH = re.compile(r"####[ \t]*([^\n]*)")


def gsm8k_hash(text: str) -> str | None:
    """The text after the last ``####`` marker, on the same line."""
    last = None
    for last in _HASH.finditer(text):
        pass
    if last is None:
        return None
    answer = last.group(1).strip().rstrip(".").strip()
    return answer or None


def last_math(text: str) -> str | None:
    """The last math span of ``text``, as Math-Verify's extraction picks it (its answer anchors first,
    then the rightmost LaTeX environment or plain expression); the span's text, normalised by
    Math-Verify, or None when the text holds no math at all."""
    import math_verify.parser
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    math_verify.parser.TIMEOUT_WARNING_SHOWN = True  # the caller's worker enforces the deadline
    # first_match: only the rightmost best-priority span is read; when it does not parse, its string
    # comes back alone (fallback) and is judged as written, rather than falling back to an earlier span.
    found = parse(
        text,
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        fallback_mode="first_match",
        extraction_mode="first_match",
        parsing_timeout=None,
    )
    strings = [f for f in found if isinstance(f, str)]
    if not strings:
        return None
    answer = strings[-1].strip()
    return answer or None


POLICIES: dict[str, Policy] = {
    "last_boxed": last_boxed,
    "answer_is": answer_is,
    "gsm8k_hash": gsm8k_hash,
    "last_math": last_math,
}

DEFAULT_POLICIES: tuple[str, ...] = ("last_boxed", "answer_is", "gsm8k_hash")
# ``rest-em verify`` grades free text from anywhere, so it also takes the last math span as a last resort.
FREE_TEXT_POLICIES: tuple[str, ...] = DEFAULT_POLICIES + ("last_math",)

RESPONSE_FORMATS: tuple[str, ...] = ("text", "answer")
# extracted_by of a verdict whose response was read whole (response_format="answer").
WHOLE_RESPONSE = "whole_response"


def check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    """Validate policy names (a typo in a config must not silently extract nothing)."""
    if isinstance(policies, str):
        raise ValueError(f"extraction policies must be a list of names, got the string {policies!r}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown extraction policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if not policies:
        raise ValueError("at least one extraction policy is needed")
    return tuple(policies)


def check_response_format(response_format: str) -> str:
    if response_format not in RESPONSE_FORMATS:
        raise ValueError(f"unknown response_format {response_format!r}; choose from {', '.join(RESPONSE_FORMATS)}")
    return response_format


def read_whole_answer(text: str) -> str | None:
    """The whole text as one answer: math delimiters and an enclosing ``\\boxed{}`` removed."""
    answer = strip_math_delimiters(text)
    if answer.startswith(("\\boxed", "\\fbox")):
        boxed = last_boxed(answer)
        answer = boxed if boxed is not None else answer
    return answer.strip() or None


def extract_answer(text: str, policies: Sequence[str] = DEFAULT_POLICIES) -> str | None:
    """The model's final answer by the first policy (in order) that finds one, else None."""
    for name in check_policies(policies):
        answer = POLICIES[name](text)
        if answer is not None:
            return answer
    return None


def extract_with_policy(text: str, policies: Sequence[str] = DEFAULT_POLICIES) -> tuple[str, str] | None:
    """Like ``extract_answer`` but also says which policy found the answer (for verdict messages)."""
    for name in check_policies(policies):
        answer = POLICIES[name](text)
        if answer is not None:
            return answer, name
    return None
