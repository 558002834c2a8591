"""MATH's answer-writing conventions, undone before Math-Verify compares two answers.

Hendrycks et al.'s MATH writes the same answer many ways (``\\dfrac{1}{2}``, ``\\frac12``,
``10\\%``, ``30^\\circ``, ``\\$1{,}000``, ``5\\text{ cm}``, ``x = 5``); models copy all of them. The
rules here are purely textual and conservative: each one only removes notation that never changes
the value of the answer. Structure (intervals, tuples, sets, matrices, pi, radicals) is left for
Math-Verify, which parses it into sympy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.math.extract import last_boxed, strip_math_delimiters

_TEXT_COMMANDS = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|textnormal|operatorname)"

_SUBSTITUTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\\displaystyle|\\limits"), ""),
    # \left( and \right) size delimiters; the lookahead keeps \leftarrow and \rightarrow intact.
    (re.compile(r"\\left\.|\\right\."), ""),
    (re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    # Spacing commands; the lookbehind keeps a matrix row break "\\ " intact.
    (re.compile(r"(?<!\\)\\(?:!|,|;|:)"), ""),
    (re.compile(r"\\q?quad(?![a-zA-Z])|(?<!\\)\\ |~"), " "),
    (re.compile(r"\{,\}"), ","),  # 10{,}000: LaTeX's thousands separator
    # Degrees: 30^\circ, 30^{\circ}, 30°, \degree.
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![a-zA-Z])"), ""),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\\sqrt\s*(\w)"), r"\\sqrt{\1}"),  # \sqrt2 -> \sqrt{2}
    (re.compile(r"(?<![\d}])\.(\d)"), r"0.\1"),  # .5 -> 0.5
    (re.compile(r"\\(?:le|leqslant)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![a-zA-Z])"), r"\\geq"),
]

# A trailing unit written as text after a value: "5\text{ cm}", "12 \mbox{square units}^2".
_TRAILING_TEXT_UNIT = re.compile(_TEXT_COMMANDS + r"\s*\{\s*[a-zA-Z][a-zA-Z .]*\}\s*(?:\^\s*\{?\d\}?)?\s*$")
# A trailing plain-word unit after a plain number: "18 dollars", "3.5 square feet".
_TRAILING_WORD_UNIT = re.compile(r"^([-+]?[\d.,/]+)\s+[a-zA-Z]{2,}[a-zA-Z .]*$")
# The whole answer is text: \text{Evelyn}, \text{(C)}.
_WHOLE_TEXT = re.compile("^" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}$")
_INNER_TEXT = re.compile(_TEXT_COMMANDS + r"\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# "x = 5", "k=3", "a_1 = 4": a single named variable assigned the answer.
_ASSIGNMENT = re.compile(r"^\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[a-zA-Z0-9]+\}?)?\s*=\s*([^=<>]+)$")
_CHOICE = re.compile(r"^\(?([a-eA-E])\)?$")


@dataclass(frozen=True)
class NormalizedAnswer:
    """An answer string after the MATH conventions are undone.

    ``is_text`` marks answers that are words (``\\text{Evelyn}``, ``\\text{(C)}``): those compare as
    strings, because sympy would read "Evelyn" as a product of six commuting symbols and accept any
    anagram.
    """

    text: str
    is_text: bool = False


_FRAC_ARG_TOKEN = re.compile(r"\s*(\\[a-zA-Z]+|[0-9a-zA-Z])")


def _frac_argument(s: str, i: int) -> tuple[str, int] | None:
    """The argument of ``\\frac`` starting at ``i``: a braced group or one token (a digit, a letter,
    a command such as ``\\pi``), as ``({...}, end)``; None when it is neither."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{" and (j == 0 or s[j - 1] != "\\"):
                depth += 1
            elif s[j] == "}" and s[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return s[i : j + 1], j + 1
        return None
    m = _FRAC_ARG_TOKEN.match(s, i)
    return ("{" + m.group(1) + "}", m.end()) if m else None


def _brace_frac_arguments(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac \\pi4`` -> ``\\frac{\\pi}{4}``, ``\\frac1{2x}`` -> ``\\frac{1}{2x}``
    (Math-Verify reads ``\\frac \\pi4`` as ``\\frac{\\}{p}i4``)."""
    out, i = [], 0
    for m in re.finditer(r"\\frac(?![a-zA-Z])", s):
        if m.start() < i:
            continue
        first = _frac_argument(s, m.end())
        second = _frac_argument(s, first[1]) if first else None
        if first is None or second is None:
            continue
        out.append(s[i : m.start()] + "\\frac" + first[0] + second[0])
        i = second[1]
    return "".join(out) + s[i:]


def _canonical_text(s: str) -> str:
    s = " ".join(s.replace("\\", " ").split()).strip(" .").casefold()
    choice = _CHOICE.match(s)
    return choice.group(1) if choice else s


def normalize_answer(answer: str) -> NormalizedAnswer:
    """Undo MATH's notation conventions; see the module docstring for what is and isn't touched."""
    s = strip_math_delimiters(answer)
    if s.startswith(("\\boxed", "\\fbox")):
        boxed = last_boxed(s)
        s = boxed if boxed is not None else s
    s = s.replace("\n", " ").strip()
    for pattern, replacement in _SUBSTITUTIONS:
        s = pattern.sub(replacement, s)
    s = _brace_frac_arguments(s).strip()

    whole = _WHOLE_TEXT.match(s)
    if whole:
        return NormalizedAnswer(_canonical_text(whole.group(1)), is_text=True)
    # Strip trailing units repeatedly ("5\text{ m}\text{ long}"), but never the whole answer.
    while True:
        m = _TRAILING_TEXT_UNIT.search(s)
        if not m or not s[: m.start()].strip():
            break
        s = s[: m.start()].strip()
    word_unit = _TRAILING_WORD_UNIT.match(s)
    if word_unit:
        s = word_unit.group(1)
    # Text left inside the answer ("2\text{ and }3") reads as its words.
    s = _INNER_TEXT.sub(lambda m: m.group(1), s)

    assignment = _ASSIGNMENT.match(s)
    if assignment:
        s = assignment.group(1).strip()
    s = s.rstrip(".").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = " ".join(s.split())
    return NormalizedAnswer(s)


def answers_match_as_text(reference: NormalizedAnswer, candidate: NormalizedAnswer) -> bool:
    """String comparison for word answers (the reference decides whether the answer is a word)."""
    return reference.text == _canonical_text(candidate.text)
