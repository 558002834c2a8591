"""Metamorphic cases for the math verifier, generated from reference answers.

    cases = generate_cases(golds)                   # golds: [(source, bare answer), ...]
    cases = sample_cases(cases, per_category=200, seed=0)

Each generator takes one reference answer and returns a prediction, or None when it does not apply
to that reference. **Rewrites** must grade ``pass`` (the same answer written another way: ``\\dfrac``
for ``\\frac``, a decimal for a terminating fraction, ``x = 5``, a unit the reference omits, ...);
**perturbations** must grade ``fail`` (off by one, a sign flip, a changed digit, a swapped pair, an
open end for a closed one, a dropped element, ``\\pi`` dropped, another variable).

A generator only applies where the result is genuinely equivalent (or genuinely different). Numeric
answers are checked by an evaluator of its own (``evaluate``: numbers, ``\\frac``, ``\\sqrt``, ``\\pi``,
powers, products and sums, single-letter variables at fixed random points), independent of sympy
and Math-Verify: a rewrite is kept only if its value equals the reference's, a perturbation only if
it differs. Lists, sets and intervals are compared element by element with the same evaluator.

Used by ``tests/verifiers/test_math_metamorphic.py`` (a seeded sample) and
``benchmarks/bench_math_accuracy.py`` (every case, against raw Math-Verify too).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

from verifiers.math.extract import gsm8k_hash, last_boxed

REWRITE = "rewrite"
PERTURBATION = "perturbation"


@dataclass(frozen=True)
class Case:
    """One metamorphic check: ``prediction`` must pass (``kind == "rewrite"``) or fail against ``gold``.

    ``response`` is the text both tools grade: the prediction in ``\\boxed{}`` (or, for
    ``boxed_in_text``, a sentence around it); for ``wrapped_answer`` a short sentence around it,
    graded by rest-em with ``response_format`` ``answer``.
    """

    category: str
    kind: str
    source: str
    gold: str
    prediction: str
    response: str
    response_format: str = "text"

    @property
    def expected(self) -> str:
        return "pass" if self.kind == REWRITE else "fail"


# ------------------------------------------------------------------------------ reference answers

def math_golds(path: str | Path) -> list[tuple[str, str]]:
    """``(source, answer)`` for each row of a MATH jsonl (the last ``\\boxed{}`` of its solution)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                answer = last_boxed(row["solution"])
                if answer:
                    out.append((f"math:{row['unique_id']}", answer))
    return out


def gsm8k_golds(path: str | Path) -> list[tuple[str, str]]:
    """``(source, answer)`` for each row of a GSM8K jsonl (the text after ``####``)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(row for row in fh if row.strip()):
            answer = gsm8k_hash(json.loads(line)["answer"])
            if answer:
                out.append((f"gsm8k:{i}", answer))
    return out


# --------------------------------------------------------------------------- an independent evaluator

_VARIABLE_VALUES = {c: 0.5 + random.Random(c).random() for c in "abcdfghjklmnpqrstuvwxyz"}
_TOKEN = re.compile(r"\s*(\\[a-zA-Z]+|\d+\.\d+|\d+|\.\d+|[a-zA-Z]|\S)")
_NO_OP_COMMANDS = {"\\left", "\\right", "\\displaystyle"}


class _Unsupported(Exception):
    pass


def _tokens(latex: str) -> list[str]:
    s = re.sub(r"\\[dt]frac", r"\\frac", latex)
    s = re.sub(r"\\[!,;:]|\\ ", " ", s)
    toks = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            break
        pos = m.end()
        tok = m.group(1)
        if tok in _NO_OP_COMMANDS:
            continue
        toks.append(tok)
    if s[pos:].strip():
        raise _Unsupported(s[pos:])
    return toks


class _Evaluator:
    """Recursive descent over a small LaTeX grammar, in floats (or complex for even roots of < 0)."""

    def __init__(self, tokens: list[str], variables: dict[str, float]) -> None:
        self.t = tokens
        self.i = 0
        self.vars = variables

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _Unsupported(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self) -> float:
        sign = 1.0
        if self.peek() in ("+", "-"):
            sign = -1.0 if self.take() == "-" else 1.0
        value = sign * self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = value + self.term() if op == "+" else value - self.term()
        return value

    _STARTS = ("\\frac", "\\sqrt", "\\pi", "{", "(")

    def _starts_factor(self, tok: str | None) -> bool:
        if tok is None:
            return False
        return tok in self._STARTS or tok[0].isdigit() or tok[0] == "." or (len(tok) == 1 and tok.isalpha())

    def term(self) -> float:
        value = self.factor()
        while True:
            tok = self.peek()
            if tok in ("\\cdot", "\\times", "*"):
                self.take()
                value *= self.factor()
            elif tok in ("/", "\\div"):
                self.take()
                d = self.factor()
                if d == 0:
                    raise _Unsupported("division by zero")
                value /= d
            elif self._starts_factor(tok):
                value *= self.factor()
            else:
                return value

    def factor(self) -> float:
        base = self.base()
        if self.peek() == "^":
            self.take()
            exponent = self.group()
            if isinstance(base, float) and base < 0 and exponent != int(exponent):
                raise _Unsupported("fractional power of a negative number")
            if abs(exponent) > 64:
                raise _Unsupported("huge exponent")
            base = base ** exponent
        return base

    def group(self) -> float:
        """A braced group, or a single token (``x^2``, ``\\frac12``)."""
        if self.peek() == "{":
            self.take("{")
            value = self.expr()
            self.take("}")
            return value
        tok = self.take()
        if tok.isdigit():
            if len(tok) > 1:  # \frac12: the bare argument is one digit; the rest is the next argument
                self.t.insert(self.i, tok[1:])
            return float(tok[0])
        if len(tok) == 1 and tok.isalpha():
            return self._variable(tok)
        if tok == "\\pi":
            return math.pi
        raise _Unsupported(tok)

    def _variable(self, name: str) -> float:
        if name not in self.vars:
            raise _Unsupported(f"variable {name}")
        return self.vars[name]

    def base(self) -> float:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok == "\\pi":
            return math.pi
        if tok == "\\frac":
            num = self.group()
            den = self.group()
            if den == 0:
                raise _Unsupported("zero denominator")
            return num / den
        if tok == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
            radicand = self.group()
            if radicand < 0:
                raise _Unsupported("root of a negative number")
            return radicand ** (1.0 / index)
        if tok in ("{", "("):
            close = "}" if tok == "{" else ")"
            value = self.expr()
            self.take(close)
            return value
        if len(tok) == 1 and tok.isalpha():
            return self._variable(tok)
        raise _Unsupported(tok)


def _raise(message: str) -> float:
    raise _Unsupported(message)


def evaluate(latex: str, variables: dict[str, float] | None = None) -> float | None:
    """The value of a scalar LaTeX expression in the small grammar above, or None outside it.

    Single letters are variables (``e`` and ``i`` are not accepted: they may be constants) at fixed
    pseudo-random values in [0.5, 1.5), unless ``variables`` gives others.
    """
    try:
        toks = _tokens(latex)
        if not toks:
            return None
        ev = _Evaluator(toks, _VARIABLE_VALUES if variables is None else variables)
        value = ev.expr()
        if ev.peek() is not None:
            return None
        value = float(value)
        return value if math.isfinite(value) else None
    except (_Unsupported, OverflowError, ValueError, ZeroDivisionError, TypeError):
        return None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _letters(latex: str) -> set[str]:
    try:
        return {t for t in _tokens(latex) if len(t) == 1 and t.isalpha()}
    except _Unsupported:
        return set()


# ---------------------------------------------------------------------------------- answer shapes

_INT = re.compile(r"-?\d+")
_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_SIMPLE_FRAC = re.compile(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside braces, parentheses and brackets."""
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _thousands_inside(gold: str) -> bool:
    """``1,\\!000``, ``1{,}000`` or ``12,345``: a comma that groups digits, not one that separates elements."""
    return bool(re.search(r"\d(?:,\\!|\{,\}|,)\d{3}(?!\d)", gold))


def _container(gold: str) -> tuple[str, str, list[str]] | None:
    """``(open, close, elements)`` for a tuple/interval ``(a, b)``, a set ``\\{a, b\\}`` or a bare list."""
    s = gold.strip()
    if _thousands_inside(s):
        return None
    for left, right in (("\\{", "\\}"), ("\\left\\{", "\\right\\}")):
        if s.startswith(left) and s.endswith(right):
            inner = s[len(left) : len(s) - len(right)]
            parts = _split_top(inner)
            return (left, right, parts) if len(parts) >= 2 else None
    if s[:1] in "([" and s[-1:] in ")]":
        inner = s[1:-1]
        # the brackets must enclose everything: "(1,2) \cup (3,4)" is not one container
        if _split_top(s, "\0") == [s] and _balanced(inner):
            parts = _split_top(inner)
            return (s[0], s[-1], parts) if len(parts) >= 2 else None
        return None
    parts = _split_top(s)
    return ("", "", parts) if len(parts) >= 2 else None


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def _values(parts: Sequence[str]) -> list[float] | None:
    vals = [evaluate(p) for p in parts]
    return None if any(v is None for v in vals) else vals  # type: ignore[return-value]


def _top_level_terms(s: str) -> list[tuple[str, str]] | None:
    """``[(sign, term), ...]`` of a sum at the top level, or None if the split is not safe."""
    terms, depth, start, sign = [], 0, 0, "+"
    i = 0
    prev = ""
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            m = re.match(r"\\[a-zA-Z]+|\\.", s[i:])
            tok = m.group(0) if m else ch
            i += len(tok)
            prev = tok
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch in "+-" and depth == 0:
            before = s[start:i].strip()
            if not before:
                if terms or i != start:
                    return None
                sign = ch
                start = i + 1
            elif prev in ("^", "_", "\\cdot", "\\times", "\\div", "/", "*", "e", "E"):
                return None
            else:
                terms.append((sign, before))
                sign = ch
                start = i + 1
        if not ch.isspace():
            prev = ch
        i += 1
    last = s[start:].strip()
    if not last:
        return None
    terms.append((sign, last))
    return terms


def _join_terms(terms: Sequence[tuple[str, str]]) -> str:
    out = ""
    for k, (sign, term) in enumerate(terms):
        if k == 0:
            out = ("-" if sign == "-" else "") + term
        else:
            out += f" {sign} {term}"
    return out


def _has(gold: str, *needles: str) -> bool:
    return any(n in gold for n in needles)


_NOT_SCALAR = ("=", "<", ">", "\\le", "\\ge", "\\ne", "\\text", "\\mbox", "\\pm", "\\mp", "\\cup", "\\cap",
               "\\in", "\\infty", "\\begin", ",", "\\%", "%", "\\circ", "\\$", "!", "\\mathrm", "|", "\\log",
               "\\sin", "\\cos", "\\tan", "\\ln", "\\sqrt[", "\\binom", "\\angle", "\\overline")


def _scalar(gold: str) -> float | None:
    """The value of a plain scalar answer (no relations, lists, units or text), else None."""
    if _has(gold, *_NOT_SCALAR):
        return None
    return evaluate(gold)


def _numeric_scalar(gold: str) -> float | None:
    """Like ``_scalar`` but without variables."""
    return _scalar(gold) if not _letters(gold) else None


# ------------------------------------------------------------------------------------- rewrites

def rw_frac_forms(gold: str) -> str | None:
    """``\\dfrac`` -> ``\\frac``, ``\\frac{a}{b}`` -> ``a/b`` or ``\\dfrac{a}{b}``."""
    if "\\dfrac" in gold or "\\tfrac" in gold:
        return re.sub(r"\\[dt]frac", r"\\frac", gold)
    m = _SIMPLE_FRAC.fullmatch(gold)
    if m:
        return f"{m.group(1)}{m.group(2)}/{m.group(3)}"
    if "\\frac" in gold:
        return gold.replace("\\frac", "\\dfrac")
    return None


def rw_decimal(gold: str) -> str | None:
    """A terminating fraction written as a decimal: ``\\frac{3}{8}`` -> ``0.375``."""
    m = _SIMPLE_FRAC.fullmatch(gold)
    if not m:
        return None
    value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1 or value.denominator == 1:
        return None
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    text = f"{abs(value.numerator) / value.denominator:.{digits}f}"
    exact = Fraction(text)
    if exact != abs(value):
        return None
    return ("-" if value < 0 else "") + text


def rw_left_right(gold: str) -> str | None:
    """Parentheses and brackets sized with ``\\left`` / ``\\right``."""
    if not re.search(r"[()\[\]]", gold) or _has(gold, "\\left", "\\right", "\\sqrt[", "\\begin", "\\text"):
        return None
    if not _balanced(re.sub(r"\\[{}]", "", gold).replace("[", "(").replace("]", ")")):
        return None
    out = re.sub(r"(?<!\\)([(\[])", r"\\left\1", gold)
    return re.sub(r"(?<!\\)([)\]])", r"\\right\1", out)


def rw_spacing(gold: str) -> str | None:
    """Spaces (and LaTeX thin spaces) around operators and after commas."""
    if _has(gold, "\\text", "\\mbox", "\\mathrm", "\\begin", "\\operatorname") or _thousands_inside(gold):
        return None
    out = re.sub(r"\s*([+=<>]|(?<=[\w}])-)\s*", r" \1 ", gold)
    out = re.sub(r",\s*", r",\\, ", out)
    out = f"  {out.strip()} "
    return out if out.strip() != gold.strip() else None


def rw_assignment(gold: str) -> str | None:
    """``x = 5``: a variable named before a single value."""
    if _has(gold, "=", ",", "<", ">", "\\le", "\\ge", "\\cup", "\\in", "\\text", "\\mbox") or gold.strip()[:1] in "([":
        return None
    var = "x" if "x" not in gold else "k" if "k" not in gold else None
    return f"{var} = {gold}" if var else None


_UNIT_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\\frac\{\d+\}\{\d+\})")


def rw_units(gold: str) -> str | None:
    """A unit the reference leaves out: ``12`` -> ``12\\text{ cm}`` (or ``12 dollars``)."""
    if not _UNIT_NUMBER.fullmatch(gold):
        return None
    unit = ("\\text{ cm}", "\\text{ square units}", "\\text{ dollars}", "\\mbox{ inches}")[_pick(gold, 4)]
    return f"{gold}{unit}" if "\\" in unit else f"{gold} {unit}"


def rw_degrees(gold: str) -> str | None:
    """Degrees the reference leaves out: ``30`` -> ``30^\\circ``."""
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", gold):
        return None
    return f"{gold}^\\circ" if _pick(gold, 2) else f"{gold}^{{\\circ}}"


def rw_thousands(gold: str) -> str | None:
    """Thousands separators: ``12345`` -> ``12,345`` (or ``12{,}345``)."""
    m = re.fullmatch(r"(-?)(\d{4,})(\.\d+)?", gold)
    if not m:
        return None
    grouped = f"{int(m.group(2)):,}"
    if _pick(gold, 2):
        grouped = grouped.replace(",", "{,}")
    return m.group(1) + grouped + (m.group(3) or "")


def rw_reorder_sum(gold: str) -> str | None:
    """The terms of a sum in another order: ``2 + \\sqrt{3}`` -> ``\\sqrt{3} + 2``."""
    value = _scalar(gold)
    if value is None:
        return None
    terms = _top_level_terms(gold)
    if not terms or len(terms) < 2:
        return None
    out = _join_terms(list(reversed(terms)))
    check = evaluate(out)
    return out if check is not None and _same(check, value) else None


_COEF_SQRT = re.compile(r"(?<![\d.^_{\\a-zA-Z])(\d+)\\sqrt\{(\d+)\}")
_LONE_SQRT = re.compile(r"^(-?)\\sqrt\{(\d+)\}$")


def rw_radicals(gold: str) -> str | None:
    """An equivalent radical: ``2\\sqrt{3}`` -> ``\\sqrt{12}``, ``\\sqrt{3}`` -> ``\\frac{\\sqrt{12}}{2}``."""
    if _has(gold, "\\text"):
        return None
    if _COEF_SQRT.search(gold):
        out = _COEF_SQRT.sub(lambda m: f"\\sqrt{{{int(m.group(1)) ** 2 * int(m.group(2))}}}", gold)
    else:
        m = _LONE_SQRT.match(gold)
        if not m:
            return None
        out = f"{m.group(1)}\\frac{{\\sqrt{{{4 * int(m.group(2))}}}}}{{2}}"
    before, after = _scalar(gold), _scalar(out)
    if before is not None:
        return out if after is not None and _same(before, after) else None
    # lists / tuples of radicals: element by element
    a, b = _container(gold), _container(out)
    if not a or not b:
        return None
    va, vb = _values(a[2]), _values(b[2])
    if va is None or vb is None or len(va) != len(vb) or not all(_same(x, y) for x, y in zip(va, vb)):
        return None
    return out


def rw_boxed_in_text(gold: str) -> str | None:
    """The reference, boxed inside a sentence (the response is the sentence)."""
    return gold


# --------------------------------------------------------------------------------- perturbations

def pt_off_by_one(gold: str) -> str | None:
    """An integer one more, or one less (``n + 1``; the numerator of a fraction)."""
    if _INT.fullmatch(gold):
        return str(int(gold) + (1 if _pick(gold, 2) else -1))
    m = _SIMPLE_FRAC.fullmatch(gold)
    if m:
        return f"{m.group(1)}\\frac{{{int(m.group(2)) + 1}}}{{{m.group(3)}}}"
    m = re.fullmatch(r"(-?\d+)(\.\d+)", gold)
    if m:
        return f"{int(m.group(1)) + 1 if not m.group(1).startswith('-') else int(m.group(1)) - 1}{m.group(2)}"
    return None


def pt_sign_flip(gold: str) -> str | None:
    """The negative of a nonzero scalar."""
    value = _scalar(gold)
    if value is None or abs(value) < 1e-12:
        return None
    terms = _top_level_terms(gold)
    if terms and len(terms) == 1:
        sign, term = terms[0]
        out = term if sign == "-" else f"-{term}"
    else:
        out = f"-({gold})"
    check = evaluate(out)
    return out if check is not None and _same(check, -value) else None


def pt_changed_digit(gold: str) -> str | None:
    """One digit changed (the last one of a number), where that changes the answer."""
    digits = [m.start() for m in re.finditer(r"\d", gold)]
    if not digits:
        return None
    pos = digits[-1 - _pick(gold, min(3, len(digits)))]
    new = str((int(gold[pos]) + 1 + _pick(gold + "d", 8)) % 10)
    out = gold[:pos] + new + gold[pos + 1 :]
    if out == gold:
        return None
    return out if _differs(gold, out) else None


def pt_swapped_pair(gold: str) -> str | None:
    """The two coordinates of an ordered pair swapped: ``(1, 2)`` -> ``(2, 1)``."""
    c = _container(gold)
    if not c or c[0] != "(" or c[1] != ")" or len(c[2]) != 2:
        return None
    a, b = c[2]
    va, vb = evaluate(a), evaluate(b)
    if va is None or vb is None or _same(va, vb):
        return None
    return f"({b}, {a})"


def pt_interval_end(gold: str) -> str | None:
    """One finite end of an interval made open instead of closed (or closed instead of open)."""
    if "\\cup" in gold:
        parts = gold.split("\\cup")
        k = len(parts) - 1
        changed = pt_interval_end(parts[k].strip())
        if changed is None:
            return None
        return "\\cup".join(parts[:k] + [f" {changed}"])
    c = _container(gold)
    if not c or c[0] not in "([" or c[1] not in ")]" or len(c[2]) != 2:
        return None
    lo, hi = c[2]
    is_interval = c[0] != c[1].translate(str.maketrans(")]", "([")) or "\\infty" in gold
    if not is_interval:
        return None  # "(1, 2)" may be a point and "[1, 2]" a closed interval: only unambiguous ones
    flip = {"(": "[", "[": "(", ")": "]", "]": ")"}
    if "\\infty" not in hi:
        return f"{c[0]}{lo}, {hi}{flip[c[1]]}"
    if "\\infty" not in lo:
        return f"{flip[c[0]]}{lo}, {hi}{c[1]}"
    return None


def pt_dropped_element(gold: str) -> str | None:
    """A set or list of solutions with one element left out."""
    c = _container(gold)
    if not c or c[0] in ("(", "[") and not gold.startswith("\\"):
        return None  # tuples and intervals are not sets
    left, right, parts = c
    vals = _values(parts)
    if vals is None:
        return None
    dropped = vals[-1]
    if any(_same(dropped, v) for v in vals[:-1]):
        return None  # a repeated value: dropping one copy leaves the same set
    return f"{left}{', '.join(parts[:-1])}{right}"


def pt_pi_dropped(gold: str) -> str | None:
    """``\\pi`` left out: ``2\\pi`` -> ``2``, ``\\frac{\\pi}{4}`` -> ``\\frac{1}{4}``."""
    if "\\pi" not in gold:
        return None
    out = re.sub(r"\{\s*\\pi\s*\}", "{1}", gold)
    out = re.sub(r"(?<![\w}])\\pi(?![a-zA-Z])", "1", out) if re.fullmatch(r"-?\\pi", out.strip()) else out
    out = re.sub(r"\\pi(?![a-zA-Z])", "", out).strip()
    if not out or out in ("-", "+") or out.endswith(("+", "-", "\\cdot", "\\times")):
        return None
    if _differs(gold, out):
        return out
    return None


def pt_other_variable(gold: str) -> str | None:
    """The same expression in another variable: ``x^2 + 1`` -> ``y^2 + 1``."""
    if _has(gold, "=", "\\text", "<", ">"):
        return None
    letters = _letters(gold)
    if len(letters) != 1 or evaluate(gold) is None:
        return None
    (old,) = letters
    new = next((c for c in "yxtzuvw" if c != old and c not in gold), None)
    if new is None:
        return None
    out = re.sub(rf"(?<![\\a-zA-Z]){old}(?![a-zA-Z])", new, gold)
    # genuinely different: the value changes when only the new variable moves
    base = evaluate(out)
    moved = evaluate(out, {**_VARIABLE_VALUES, new: _VARIABLE_VALUES.get(new, 1.0) + 0.37})
    if base is None or moved is None or _same(base, moved):
        return None
    return out



# ------------------------------------------------------------- numbers as people write them (issue 25)

def _plain_integer(gold: str) -> re.Match[str] | None:
    return re.fullmatch(r"(-?)(\d{4,})", gold)


def rw_digit_grouping(gold: str) -> str | None:
    """Groups of three digits separated by a thin space, ``\\,``, ``\\!``, a space or a no-break space."""
    m = _plain_integer(gold)
    if not m or m.group(2).startswith("0"):
        return None
    sep = ("\u2009", "\\,", "\\!", " ", "\u00a0", "\u202f")[_pick(gold + "g", 6)]
    return m.group(1) + f"{int(m.group(2)):,}".replace(",", sep)


_DECIMAL_GOLD = re.compile(r"(-?)(\d+)\.(\d+)")


def rw_decimal_comma(gold: str) -> str | None:
    """A decimal written with a decimal comma, where no thousands reading fits: ``3.5`` -> ``3,5``."""
    m = _DECIMAL_GOLD.fullmatch(gold)
    if not m:
        return None
    sign, whole, frac = m.groups()
    if len(frac) == 3 and 1 <= len(whole) <= 3 and not whole.startswith("0"):
        return None  # 1,234 would be one thousand two hundred thirty-four
    return f"{sign}{whole},{frac}"


def rw_mixed_number(gold: str) -> str | None:
    """An improper fraction as a mixed number: ``\\frac{7}{2}`` -> ``3 1/2`` or ``3\\frac{1}{2}``."""
    m = _SIMPLE_FRAC.fullmatch(gold)
    if not m or m.group(2).startswith("-"):
        return None
    num, den = int(m.group(2)), int(m.group(3))
    if den <= 1 or num <= den or num % den == 0:
        return None
    whole, rest = divmod(num, den)
    body = f"{whole} {rest}/{den}" if _pick(gold, 2) else f"{whole}\\frac{{{rest}}}{{{den}}}"
    return m.group(1) + body


def rw_percent(gold: str) -> str | None:
    """A fraction of one as a percent (``0.25`` -> ``25\\%``), or a percent as a decimal (``40\\%`` -> ``0.4``)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*\\%", gold)
    if m:
        value = Fraction(m.group(1)) / 100
        return _decimal_text(value)
    m = re.fullmatch(r"0\.(\d{1,4})", gold)
    if m and int(m.group(1)):
        return _decimal_text(Fraction(gold) * 100) + "\\%"
    return None


def _decimal_text(value: Fraction) -> str | None:
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
        if digits > 8:
            return None
    return f"{float(value):.{digits}f}" if digits else str(value.numerator)


def _symbolic_value(gold: str) -> float | None:
    """The value of a scalar reference without a finite decimal expansion (``\\pi``, a radical, ``1/3``)."""
    if "." in gold or _has(gold, "^", "\\ln", "\\log"):
        return None
    value = _numeric_scalar(gold)
    if value is None or value == 0 or abs(value) > 1e6 or abs(value) < 1e-3:
        return None
    m = _SIMPLE_FRAC.fullmatch(gold)
    if m:
        den = Fraction(int(m.group(2)), int(m.group(3))).denominator
        while den % 2 == 0:
            den //= 2
        while den % 5 == 0:
            den //= 5
        return value if den != 1 else None
    return value if _has(gold, "\\pi", "\\sqrt") else None


def _approximation(value: float, significant: int, truncate: bool) -> str | None:
    exponent = math.floor(math.log10(abs(value)))
    decimals = significant - 1 - exponent
    if decimals < 1 or decimals > 10:
        return None
    quantum = Decimal(1).scaleb(-decimals)
    exact = Decimal(repr(value))
    return str(exact.quantize(quantum, rounding=ROUND_DOWN if truncate else ROUND_HALF_UP))


def stated_precision_ok(value: float, written: str) -> bool:
    """Is ``written`` ``value`` rounded or truncated to the decimals it writes (the approximation rule
    of ``verifiers.math.equivalence.approximates``, here in floats for the generators)?"""
    m = re.fullmatch(r"-?\d+\.(\d+)", written)
    if not m:
        return False
    quantum = Decimal(1).scaleb(-len(m.group(1)))
    exact = Decimal(repr(value))
    return Decimal(written) in {exact.quantize(quantum, rounding=r) for r in (ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_DOWN)}


# Significant digits of the approximations: at least 4, so that one unit of the last digit is at most
# 1e-3 of the value (the default numeric_tolerance).
APPROXIMATION_DIGITS = (4, 5, 6)


def rw_numeric_approx(gold: str) -> str | None:
    """A symbolic reference as a decimal, rounded or truncated to 4-6 significant digits (a fraction: 6
    decimals at least): ``40\\pi`` -> ``125.664``, ``\\frac{1}{6}`` -> ``0.166667``."""
    value = _symbolic_value(gold)
    if value is None:
        return None
    digits = APPROXIMATION_DIGITS[_pick(gold + "a", len(APPROXIMATION_DIGITS))]
    if _SIMPLE_FRAC.fullmatch(gold):  # a fraction is approximated to 6 decimals at least (see RATIONAL_MIN_DECIMALS)
        digits = max(digits, 6 + 1 + math.floor(math.log10(abs(value))))
    out = _approximation(value, digits, truncate=bool(_pick(gold + "t", 2)))
    if out is None or Decimal(1).scaleb(-len(out.split(".")[1])) / Decimal(repr(abs(value))) > Decimal("1e-3"):
        return None
    return out


_WRAPPERS = ("Answer: ${}$", "The answer is ${}$.", "So we get ${}$.", "Final answer: ${}$", "Therefore, the result is ${}$.")


def rw_wrapped_answer(gold: str) -> str | None:
    """The reference inside a short sentence, graded in ``answer`` format: ``Answer: $\\frac{10}{9}$``."""
    if "$" in gold or "\\boxed" in gold or "\n" in gold:
        return None
    return gold


def wrap(gold: str, source: str) -> str:
    """The sentence of ``wrapped_answer``: the answer after a label or inside a short sentence."""
    if re.fullmatch(r"-?\d+(?:\.\d+)?", gold) and _pick(source + "w", 3) == 0:
        return f"The total is {gold}."
    return _WRAPPERS[_pick(source, len(_WRAPPERS))].format(gold)


def pt_grouped_wrong_digit(gold: str) -> str | None:
    """A grouped number with one digit changed: ``12 345`` for ``12346``."""
    grouped = rw_digit_grouping(gold)
    if grouped is None:
        return None
    digits = [m.start() for m in re.finditer(r"\d", grouped)]
    pos = digits[_pick(gold + "p", len(digits))]
    new = str((int(grouped[pos]) + 1 + _pick(gold + "n", 8)) % 10)
    out = grouped[:pos] + new + grouped[pos + 1 :]
    return out if out.lstrip("-")[0] != "0" and out != grouped else None


def pt_approx_third_digit(gold: str) -> str | None:
    """An approximation off in its third significant digit: ``1.742`` for ``\\sqrt{3}``."""
    approx = rw_numeric_approx(gold)
    if approx is None:
        return None
    digits = [i for i, ch in enumerate(approx) if ch.isdigit()]
    first = next(k for k, i in enumerate(digits) if approx[i] != "0")
    if first + 2 >= len(digits):
        return None
    pos = digits[first + 2]
    out = approx[:pos] + str((int(approx[pos]) + 1 + _pick(gold + "3", 8)) % 10) + approx[pos + 1 :]
    value = _symbolic_value(gold)
    return out if value is not None and not stated_precision_ok(value, out) else None


def _approx_perturbed(gold: str, perturb: Generator) -> str | None:
    approx = rw_numeric_approx(gold)
    value = _symbolic_value(gold)
    if approx is None or value is None:
        return None
    out = perturb(approx.lstrip("-")) if not approx.startswith("-") else perturb(approx)
    if out is None or "." not in out or stated_precision_ok(value, out):
        return None  # a "perturbation" that is still the value at its stated precision is no near miss
    return out


def pt_approx_changed_digit(gold: str) -> str | None:
    """``changed_digit`` applied to the numeric approximation of a symbolic reference."""
    return _approx_perturbed(gold, pt_changed_digit)


def pt_approx_off_by_one(gold: str) -> str | None:
    """``off_by_one`` applied to the numeric approximation of a symbolic reference (its integer part)."""
    return _approx_perturbed(gold, pt_off_by_one)


def pt_plus_minus(gold: str) -> str | None:
    """``\\pm a`` for a nonzero scalar ``a`` (two answers, not one)."""
    value = _scalar(gold)
    if value is None or abs(value) < 1e-12 or gold.lstrip().startswith("-"):
        return None
    return f"\\pm {gold}" if _pick(gold, 2) else f"\u00b1{gold}"


def pt_flipped_term(gold: str) -> str | None:
    """The sign of the last term of a sum flipped: ``1 + \\frac{1}{e}`` -> ``1 - \\frac{1}{e}``."""
    value = _scalar(gold)
    terms = _top_level_terms(gold) if value is not None else None
    if not terms or len(terms) < 2:
        return None
    sign, term = terms[-1]
    out = _join_terms(list(terms[:-1]) + [("-" if sign == "+" else "+", term)])
    return out if _differs(gold, out) else None


def pt_other_equation(gold: str) -> str | None:
    """Another equation written ``... = 0``: ``y = 2x + 3`` -> ``y - (2x + 3) + 1 = 0`` (both sides of
    a different equation; Math-Verify has read two such equations as the number 0)."""
    if gold.count("=") != 1 or _has(gold, "<", ">", "\\le", "\\ge", "\\text", ",", "\\in", "\\pm"):
        return None
    lhs, rhs = (side.strip() for side in gold.split("="))
    if not lhs or not rhs or not _letters(gold) - {"e", "i"}:
        return None
    return f"{lhs} - ({rhs}) + 1 = 0"


def _differs(gold: str, out: str) -> bool:
    """Are these two answers different (by the evaluator, element by element), for sure?"""
    a, b = _scalar(gold), _scalar(out)
    if a is not None or b is not None:
        return a is not None and b is not None and not _same(a, b)
    ca, cb = _container(gold), _container(out)
    if not ca or not cb or ca[:2] != cb[:2] or len(ca[2]) != len(cb[2]):
        return False
    va, vb = _values(ca[2]), _values(cb[2])
    if va is None or vb is None:
        return False
    if ca[0] in ("(", "[") and not gold.startswith("\\"):
        return any(not _same(x, y) for x, y in zip(va, vb))  # ordered
    sa = {round(x, 9) for x in va}
    sb = {round(x, 9) for x in vb}
    return sa != sb


def _pick(key: str, n: int) -> int:
    """A deterministic choice among ``n`` for this answer (same cases on every run)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % n


Generator = Callable[[str], "str | None"]

REWRITES: dict[str, Generator] = {
    "frac_forms": rw_frac_forms,
    "decimal": rw_decimal,
    "left_right": rw_left_right,
    "spacing": rw_spacing,
    "assignment": rw_assignment,
    "units": rw_units,
    "degrees": rw_degrees,
    "thousands": rw_thousands,
    "reorder_sum": rw_reorder_sum,
    "radicals": rw_radicals,
    "boxed_in_text": rw_boxed_in_text,
    "digit_grouping": rw_digit_grouping,
    "decimal_comma": rw_decimal_comma,
    "mixed_number": rw_mixed_number,
    "percent": rw_percent,
    "numeric_approx": rw_numeric_approx,
    "wrapped_answer": rw_wrapped_answer,
}

PERTURBATIONS: dict[str, Generator] = {
    "off_by_one": pt_off_by_one,
    "sign_flip": pt_sign_flip,
    "changed_digit": pt_changed_digit,
    "swapped_pair": pt_swapped_pair,
    "interval_end": pt_interval_end,
    "dropped_element": pt_dropped_element,
    "pi_dropped": pt_pi_dropped,
    "other_variable": pt_other_variable,
    "grouped_wrong_digit": pt_grouped_wrong_digit,
    "approx_third_digit": pt_approx_third_digit,
    "approx_changed_digit": pt_approx_changed_digit,
    "approx_off_by_one": pt_approx_off_by_one,
    "plus_minus": pt_plus_minus,
    "flipped_term": pt_flipped_term,
    "other_equation": pt_other_equation,
}

# Categories whose prediction the small evaluator reads differently from its meaning (``12 345``,
# ``3,5``, ``1 1/2``, ``25\%``) or that are approximations: their generators check the value themselves.
NOTATION_CATEGORIES = frozenset({"digit_grouping", "decimal_comma", "mixed_number", "percent", "numeric_approx",
                                 "grouped_wrong_digit", "approx_third_digit", "approx_changed_digit",
                                 "approx_off_by_one", "plus_minus", "other_equation"})


def response_for(category: str, prediction: str, source: str) -> str:
    """The text both tools grade: the prediction boxed, alone or (``boxed_in_text``) in a sentence;
    for ``wrapped_answer`` a short sentence around it, unboxed."""
    if category == "wrapped_answer":
        return wrap(prediction, source)
    if category == "boxed_in_text":
        lead = ("We simplify and check each case. ", "Putting it together, ", "")[_pick(source, 3)]
        return f"{lead}So the final answer is $\\boxed{{{prediction}}}$, as required."
    return f"\\boxed{{{prediction}}}"


def generate_cases(golds: Iterable[tuple[str, str]]) -> list[Case]:
    """Every case every generator makes from these ``(source, reference answer)`` pairs."""
    cases = []
    for source, gold in golds:
        gold = gold.strip()
        for kind, generators in ((REWRITE, REWRITES), (PERTURBATION, PERTURBATIONS)):
            for category, generate in generators.items():
                prediction = generate(gold)
                if prediction is None or (kind == PERTURBATION and prediction.strip() == gold):
                    continue
                cases.append(Case(category, kind, source, gold, prediction, response_for(category, prediction, source),
                                  "answer" if category == "wrapped_answer" else "text"))
    return cases


def sample_cases(cases: Sequence[Case], per_category: int, seed: int = 0) -> list[Case]:
    """At most ``per_category`` cases of each category, chosen with ``seed``."""
    by_category: dict[str, list[Case]] = {}
    for case in cases:
        by_category.setdefault(case.category, []).append(case)
    rng = random.Random(seed)
    out = []
    for category in sorted(by_category):
        group = by_category[category]
        out += group if len(group) <= per_category else rng.sample(group, per_category)
    return out


# ------------------------------------------------------------------------------- raw Math-Verify

def raw_math_verify(task: tuple[str, str]) -> bool:
    """Raw Math-Verify on one case: ``verify(parse(boxed gold), parse(response))``. Runs in a worker."""
    import math_verify.grader
    import math_verify.parser
    from math_verify import parse, verify

    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    gold, response = task
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    pred_parsed = parse(response, parsing_timeout=None)
    return bool(gold_parsed) and bool(pred_parsed) and bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _raw_text(text: str) -> str:
    """A text as raw Math-Verify gets it in ``bench_math_accuracy.py --pairs``: a bare answer inside
    ``$...$`` (its LaTeX extraction needs a delimiter), anything with a delimiter or with prose as is."""
    from verifiers.math.extract import is_wrapped

    has_delimiter = any(d in text for d in ("$", "\\(", "\\[", "\\boxed"))
    return text if has_delimiter or is_wrapped(text) else f"${text}$"


def raw_math_verify_answers(task: tuple[str, str]) -> bool:
    """Raw Math-Verify on one labelled pair: ``verify(parse(reference), parse(response))``, each text
    read as ``_raw_text`` says. Runs in a worker."""
    import math_verify.grader
    import math_verify.parser
    from math_verify import parse, verify

    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    reference, response = task
    gold = parse(_raw_text(reference), parsing_timeout=None)
    pred = parse(_raw_text(response), parsing_timeout=None)
    return bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
