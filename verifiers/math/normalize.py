"""MATH's answer-writing conventions, undone before Math-Verify compares two answers.

Hendrycks et al.'s MATH writes the same answer many ways (``\\dfrac{1}{2}``, ``\\frac12``,
``10\\%``, ``30^\\circ``, ``\\$1{,}000``, ``5\\text{ cm}``, ``x = 5``); models copy all of them. The
rules here are purely textual and conservative: each one only removes notation that never changes
the value of the answer. Structure (intervals, tuples, sets, matrices, pi, radicals) is left for
Math-Verify, which parses it into sympy.

Numbers as people write them (each rule is a block of rows, positives and near misses, in the
table ``FORMS`` of ``tests/verifiers/test_math_forms.py``):

- digit grouping: ``1,000``, ``1{,}000``, ``1\\,000``, ``1\\!000``, ``1 000`` (a plain, thin or
  no-break space), and ``1.000.000`` where the decimal comma is on;
- a decimal comma (``3,5``, ``0,125``, ``1.234,5``) where no thousands reading fits
  (``AnswerRules.decimal_comma``);
- a mixed number ``1 1/2`` or ``1\\frac{1}{2}`` (the fraction proper: numerator below denominator);
- a percent sign is remembered (``NormalizedAnswer.percent``) so that ``10\\%`` can equal ``0.1``
  (``AnswerRules.percent``); a leading ``\\approx`` is dropped (``AnswerRules.numeric_tolerance``
  decides when a decimal approximates a symbolic reference: ``verifiers.math.equivalence``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.math.extract import last_boxed, strip_math_delimiters

DECIMAL_COMMA_MODES: tuple[str, ...] = ("auto", "never", "always")
PERCENT_MODES: tuple[str, ...] = ("either", "number", "fraction")
# The coarsest relative precision at which a decimal approximation equals a symbolic reference:
# chosen by benchmarks/bench_math_accuracy.py --tolerance-sweep (docs/verifiers.md, "Measured").
DEFAULT_NUMERIC_TOLERANCE = 1e-3


@dataclass(frozen=True)
class AnswerRules:
    """The policy choices among the normalisation rules (``verifier.math.*`` in the run config).

    ``decimal_comma``      ``auto``: ``3,5`` and ``0,125`` are decimals in a response, ``1,234`` stays
                           one thousand two hundred thirty-four, and a reference is never read with a
                           decimal comma (``2,5`` there is a list); ``never``: a comma only groups
                           digits or separates elements; ``always``: a comma between digits of a single
                           number is a decimal comma, in the reference too (``1,234`` = 1.234).
    ``percent``            ``either``: ``10\\%`` equals ``10`` and ``0.1``; ``number``: ``10`` only (the
                           sign is dropped, MATH's convention); ``fraction``: ``0.1`` only.
    ``numeric_tolerance``  a decimal equals a symbolic reference (``40\\pi``, ``\\sqrt{3}``, ``\\frac{1}{3}``)
                           when it is that value rounded or truncated to the decimals it states, and
                           one unit of its last decimal is at most this fraction of the value
                           (``1.732`` for ``\\sqrt{3}``: 0.001 / 1.732 = 5.8e-4); ``0`` turns it off.
    """

    decimal_comma: str = "auto"
    percent: str = "either"
    numeric_tolerance: float = DEFAULT_NUMERIC_TOLERANCE

    def __post_init__(self) -> None:
        if self.decimal_comma not in DECIMAL_COMMA_MODES:
            raise ValueError(f"unknown decimal_comma {self.decimal_comma!r}; choose from {', '.join(DECIMAL_COMMA_MODES)}")
        if self.percent not in PERCENT_MODES:
            raise ValueError(f"unknown percent {self.percent!r}; choose from {', '.join(PERCENT_MODES)}")
        if isinstance(self.numeric_tolerance, bool) or not isinstance(self.numeric_tolerance, (int, float)) \
                or not 0 <= self.numeric_tolerance < 1:
            raise ValueError(f"numeric_tolerance must be a number in [0, 1), got {self.numeric_tolerance!r}")

_TEXT_COMMANDS = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|textnormal|operatorname)"

# Unicode people paste: spaces that group digits, the minus sign, symbols with a LaTeX spelling.
_UNICODE: list[tuple[re.Pattern[str], str]] = [
    (re.compile("[\u00a0\u2002-\u200a\u202f\u205f\u3000]"), " "),
    (re.compile("[\u2212\u2012\u2013]"), "-"),
    (re.compile("\u00b1"), r"\\pm "),
    (re.compile("\u2213"), r"\\mp "),
    (re.compile("\u00d7"), r"\\times "),
    (re.compile("\u00f7"), r"\\div "),
    (re.compile("\u03c0"), r"\\pi "),
    (re.compile("\u221e"), r"\\infty "),
    (re.compile("\u2264"), r"\\leq "),
    (re.compile("\u2265"), r"\\geq "),
    (re.compile("\u2260"), r"\\neq "),
    (re.compile("\u221a\\s*(\\d+|[a-zA-Z])"), r"\\sqrt{\1}"),
    (re.compile("[\u20ac\u00a3\u00a5\u20b9]"), ""),  # euro, pound, yen, rupee signs (the dollar sign is below)
    (re.compile("\u00bd"), " 1/2"), (re.compile("\u2153"), " 1/3"), (re.compile("\u2154"), " 2/3"),
    (re.compile("\u00bc"), " 1/4"), (re.compile("\u00be"), " 3/4"),
    (re.compile("\u00b2"), "^2"),
    (re.compile("\u00b3"), "^3"),
]

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
    (re.compile(r"\\%|%|(?<=\d)\s*(?:\\text\{\s*percent\s*\}|percent\b)"), ""),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\\sqrt\s*(\w)"), r"\\sqrt{\1}"),  # \sqrt2 -> \sqrt{2}
    (re.compile(r"(?<![\d}])\.(\d)"), r"0.\1"),  # .5 -> 0.5
    (re.compile(r"\\(?:le|leqslant)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![a-zA-Z])"), r"\\geq"),
]

# A trailing unit written as text after a value: "5\text{ cm}", "12 \mbox{square units}^2".
_TRAILING_TEXT_UNIT = re.compile(_TEXT_COMMANDS + r"\s*\{\s*[a-zA-Z][a-zA-Z ./]*\}\s*(?:\^\s*\{?\d\}?)?\s*$")
# A trailing plain-word unit after a plain number: "18 dollars", "3.5 square feet".
_TRAILING_WORD_UNIT = re.compile(r"^([-+]?[\d.,/]+(?: \d{3})*(?: \d+/\d+)?)\s+[a-zA-Z]{2,}[a-zA-Z .]*$")
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
    # The answer was a plain number with a percent sign (``10\\%``, ``10 percent``), now ``text`` = ``10``.
    percent: bool = False
    # "y = 2x + 3" read as "2x + 3": the whole relation, normalised, for a candidate that is an equation.
    relation: str | None = None


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


# Digit groups of three separated by single spaces (after the thin/no-break spaces, ``\,``, ``\ ``
# and ``~`` became spaces or nothing): 1 000 000, 12 345.5. Not before a "/" (the mixed number 1 123/456).
_SPACE_GROUPS = re.compile(r"(?<![\d.,/])(\d{1,3})((?: \d{3})+)(?![\d/]| \d)")
_DOT_GROUPS = re.compile(r"^([-+]?)(\d{1,3}(?:\.\d{3}){2,})$")  # 1.000.000: never a decimal
_EURO_DECIMAL = re.compile(r"^([-+]?)(\d{1,3}(?:\.\d{3})+),(\d+)$")  # 1.234,5
_COMMA_NUMBER = re.compile(r"^([-+]?)(\d+),(\d+)$")
_MIXED_SLASH = re.compile(r"^([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)$")
_MIXED_FRAC = re.compile(r"^([-+]?)(\d+)\s*\\frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}$")
_PERCENT = re.compile(r"\\%|%|(?<=\d)\s*(?:\\text\{\s*percent\s*\}|percent\b)")
_APPROX = re.compile(r"^(?:\\approx|\\sim|\u2248|approximately|about|approx\.?)\s*")
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d+)?|\.\d+)$")
_E_NOTATION = re.compile(r"^([-+]?\d+(?:\.\d+)?)[eE]([-+]?\d+)$")  # 1.5e3, 2E-4 (a digit after the e)


# 0.\overline{3}, 1.2\overline{45}: a repeating decimal.
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\overline\{(\d+)\}")


def _repeating_fraction(m: re.Match[str]) -> str:
    whole, fixed, period = m.group(1) or "0", m.group(2), m.group(3)
    num = int(whole + fixed + period) - int(whole + fixed)
    den = (10 ** len(period) - 1) * 10 ** len(fixed)
    return f"\\frac{{{num}}}{{{den}}}"


def _decimal_comma(s: str, mode: str) -> str:
    """``3,5`` -> ``3.5`` where the mode says the comma is a decimal comma (see ``AnswerRules``)."""
    if mode == "never":
        return s
    dots = _DOT_GROUPS.match(s)
    if dots:
        return dots.group(1) + dots.group(2).replace(".", "")
    euro = _EURO_DECIMAL.match(s)
    if euro:
        return f"{euro.group(1)}{euro.group(2).replace('.', '')}.{euro.group(3)}"
    m = _COMMA_NUMBER.match(s)
    if not m:
        return s
    sign, whole, frac = m.groups()
    thousands_fits = len(frac) == 3 and 1 <= len(whole) <= 3 and not whole.startswith("0")
    if mode == "always" or not thousands_fits:
        return f"{sign}{whole}.{frac}"
    return s


def _mixed_number(s: str) -> str:
    """``1 1/2`` or ``1\\frac{1}{2}`` -> ``\\frac{3}{2}`` (a proper fraction after a whole number)."""
    m = _MIXED_SLASH.match(s) or _MIXED_FRAC.match(s)
    if not m:
        return s
    sign, whole, num, den = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    if den == 0 or num >= den:
        return s
    return f"{'-' if sign == '-' else ''}\\frac{{{whole * den + num}}}{{{den}}}"


def normalize_answer(answer: str, decimal_comma: str = "never") -> NormalizedAnswer:
    """Undo MATH's notation conventions and people's number formats (see the module docstring).

    ``decimal_comma`` is ``AnswerRules.decimal_comma`` as it applies to this answer: the caller
    passes ``never`` for a reference in ``auto`` mode, and for a response whose reference is a list.
    """
    s = strip_math_delimiters(answer)
    if s.startswith(("\\boxed", "\\fbox")):
        boxed = last_boxed(s)
        s = boxed if boxed is not None else s
    s = s.replace("\n", " ").strip()
    for pattern, replacement in _UNICODE:
        s = pattern.sub(replacement, s)
    percent = bool(_PERCENT.search(s))
    for pattern, replacement in _SUBSTITUTIONS:
        s = pattern.sub(replacement, s)
    s = _APPROX.sub("", s.strip())
    s = _brace_frac_arguments(s).strip()

    whole = _WHOLE_TEXT.match(s)
    if whole and re.match(r"\s*[-+]?\d", whole.group(1)):
        s = whole.group(1).strip()  # \text{5 cm}: a number with its unit, not a word answer
    elif whole:
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

    relation = None
    assignment = _ASSIGNMENT.match(s)
    if assignment:
        relation = " ".join(s.rstrip(".").split())
        s = assignment.group(1).strip()
    s = s.rstrip(".").strip()
    s = " ".join(s.split())
    s = _REPEATING.sub(_repeating_fraction, s)
    s = _mixed_number(s)
    s = _SPACE_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), s)
    s = _decimal_comma(s, decimal_comma)
    s = _E_NOTATION.sub(lambda m: f"{m.group(1)} \\times 10^{{{int(m.group(2))}}}", s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return NormalizedAnswer(s, percent=percent and bool(_PLAIN_NUMBER.match(s)), relation=relation)


def is_plain_number(text: str) -> bool:
    """``-12``, ``0.5``: a number with no notation left (the shape the percent rule applies to)."""
    return bool(_PLAIN_NUMBER.match(text))


def answers_match_as_text(reference: NormalizedAnswer, candidate: NormalizedAnswer) -> bool:
    """String comparison for word answers (the reference decides whether the answer is a word)."""
    return reference.text == _canonical_text(candidate.text)
