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
    """``$x$`` -> ``x`` when one pair of delimiters encloses the whole string (not ``$1$ and $2$``)."""
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            inner = s[len(left) : len(s) - len(right)]
            if left.startswith("$") and re.search(r"(?<!\\)\$", inner):
                return s  # "$1$ and $2$": two spans, not one
            if left in ("\\(", "\\[") and (right in inner or left in inner):
                return s
            return inner.strip()
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


_LAST_MATH_REGEXES: list | None = None


def _last_math_regexes() -> list:
    """Math-Verify's extraction regexes (LaTeX spans with ``\\boxed`` first, then plain expressions),
    as ``[(priority, [(pattern, is_latex), ...]), ...]`` in priority order; built once per process."""
    global _LAST_MATH_REGEXES
    if _LAST_MATH_REGEXES is None:
        from itertools import groupby

        from math_verify import ExprExtractionConfig, LatexExtractionConfig
        from math_verify.parser import get_extraction_regexes

        flat = [
            (priority, pattern, isinstance(target, LatexExtractionConfig))
            for patterns, target in get_extraction_regexes([LatexExtractionConfig(boxed_match_priority=0),
                                                            ExprExtractionConfig()])
            for pattern, priority in patterns
        ]
        flat.sort(key=lambda row: row[0])
        _LAST_MATH_REGEXES = [(prio, [(p, latex) for _, p, latex in rows])
                              for prio, rows in groupby(flat, key=lambda row: row[0])]
    return _LAST_MATH_REGEXES


def _span_text(match: re.Match[str], is_latex: bool) -> str:
    """The text of a Math-Verify match as written (its LaTeX spans joined by ", ", a percent sign kept)."""
    groups = match.groupdict()
    if not is_latex:
        if groups.get("expr"):
            return groups["expr"].strip()
        number = "".join(groups.get(k) or "" for k in ("integer1", "decimal1", "integer2", "decimal2", "decimal3", "integer3"))
        return number + ("\\%" if groups.get("percent") else "")
    spans = []
    for prefix in ["first_"] + [f"next{i}_" for i in range(1, 6)]:
        content = next((v for k, v in groups.items() if k.startswith(prefix + "latex") and v), None)
        if content is None:
            continue
        if "\\boxed" in content or "\\fbox" in content:
            content = last_boxed(content) or content
        spans.append(content.strip() + ("\\%" if groups.get(prefix + "percent") else ""))
    return ", ".join(spans)


def last_math(text: str) -> str | None:
    """The last math span of ``text`` as Math-Verify's extraction picks it (``math_verify.parse`` with
    ``LatexExtractionConfig(boxed_match_priority=0)`` and ``ExprExtractionConfig``, first match): a
    ``\\boxed{}`` first, then a span after "final answer is" / "answer:", then the rightmost LaTeX span
    (``$...$``, ``\\(...\\)``, ``\\[...\\]``) or plain number or expression. The span comes back as
    written (several spans joined "a, b" as Math-Verify makes a set of them), for
    ``verifiers.math.normalize`` to read; None when the text holds no math at all."""
    for _, patterns in _last_math_regexes():
        best: tuple[re.Match[str], bool] | None = None
        for pattern, is_latex in patterns:
            for m in pattern.finditer(text):
                # Math-Verify's order: the match ending last, then the one starting first.
                if best is None or (m.end(), -m.start()) > (best[0].end(), -best[0].start()):
                    best = (m, is_latex)
        if best is not None:
            answer = _span_text(*best).strip()
            return answer or None
    return None


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
        if boxed is not None and answer.rstrip(" .").endswith("}"):
            answer = boxed
    return answer.strip() or None


# Words that are mathematics, not prose, in an answer: functions, constants and operators spelled
# without a backslash, and single letters (variables).
_MATH_WORDS = frozenset(
    "sin cos tan sec csc cot arcsin arccos arctan sinh cosh tanh log ln lg exp lim max min gcd lcm det mod "
    "pi infty inf sqrt frac deg rad and or".split()
)
_PROSE_WORDS = frozenset(
    "the is are was so thus hence therefore answer final we get gives total result value equals of to be "
    "it this that which there then for with in on at by its will would can has have solution so our".split()
)
_TEXT_GROUP = re.compile(
    r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|mathbb|mathcal|textnormal|operatorname|begin|end)"
    r"\s*\{[^{}]*\}"
)
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_INNER_DELIMITER = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")


def is_wrapped(answer: str) -> bool:
    """Is this (delimiters already stripped) a short text around an answer rather than one answer?

    Yes when it still holds a math delimiter or a ``\\boxed`` ("Answer: $5$", "so \\boxed{5}."),
    a label before a colon ("Answer: 5"), a word of prose ("The total is 18."), or two words of three
    letters or more outside ``\\text{}`` ("5 square units" reads the same either way). Function names,
    ``and`` / ``or``, single letters and two-letter products (``ab + bc``) are mathematics.
    """
    if _INNER_DELIMITER.search(answer):
        return True
    bare = _COMMAND.sub(" ", _TEXT_GROUP.sub(" ", answer))
    if re.search(r"[A-Za-z]{2,}\s*:", bare):
        return True
    words = [w.lower() for w in _WORD.findall(bare)]
    words = [w for w in words if w not in _MATH_WORDS]
    # Two-letter runs are often products of variables (ab + bc): only longer ones count as words.
    return any(w in _PROSE_WORDS for w in words) or len([w for w in words if len(w) >= 3]) >= 2


# extracted_by when an ``answer``-format response was a short text around its answer.
WRAPPED_POLICIES: tuple[str, ...] = ("last_boxed", "last_math")


def read_answer_response(text: str) -> tuple[str, str] | None:
    """``(answer, extracted_by)`` of a response in ``answer`` format.

    The whole response is the answer (``whole_response``) unless it is a short text around one
    (``is_wrapped``); then the answer is its last ``\\boxed{}`` or, as Math-Verify takes it, its last
    math expression (``last_math``), and ``extracted_by`` names which. None for an empty response.
    """
    whole = read_whole_answer(text)
    if whole is None:
        return None
    if is_wrapped(whole):
        found = extract_with_policy(text, WRAPPED_POLICIES)
        if found is not None:
            return found
    return whole, WHOLE_RESPONSE


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
