"""Write tests/data/math_pairs.jsonl: labelled (reference, response) pairs of answers as people write them.

    .venv/bin/python benchmarks/make_math_pairs.py            # REST_EM_DATA_DIR or ../shared/data
    .venv/bin/python benchmarks/make_math_pairs.py --check    # exit 1 when the committed file differs

The references are real answers of MATH test and GSM8K test; the responses are the forms people write
(digit groups, decimal commas, a sentence around the answer, mixed numbers, percents, decimal
approximations), each kind with positives (label true: the same value) and near misses (label false:
another value). Labels come from exact arithmetic here (``fractions.Fraction``, sympy's ``N`` at 30
digits for the approximations), not from any verifier. Rows: ``{"kind", "reference", "response",
"label", "source"}``; ``benchmarks/bench_math_accuracy.py --pairs FILE`` grades them in ``answer``
format with rest-em and with raw Math-Verify.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verifiers.math.metamorphic import gsm8k_golds, math_golds  # noqa: E402

OUT = ROOT / "tests" / "data" / "math_pairs.jsonl"
THIN, NBSP, NNBSP = "\u2009", "\u00a0", "\u202f"


def _data_dir() -> Path:
    env = os.environ.get("REST_EM_DATA_DIR") or os.environ.get("REST_EM_SHARED_DATA")
    return Path(env) if env else ROOT / ".." / "shared" / "data"


def _group(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def _other_digit(text: str, rng: random.Random) -> str:
    """``text`` with one digit (not a leading one) replaced by another."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit()][1:]
    i = rng.choice(positions)
    new = rng.choice([d for d in "0123456789" if d != text[i]])
    return text[:i] + new + text[i + 1 :]


def grouping(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    seps = [" ", THIN, NBSP, NNBSP, "\\,", "\\!", "{,}", ",", "\\ "]
    wrappers = ["{}", "${}$", "{} dollars", "\\${}", "{}\\text{{ people}}"]
    rows = []
    for source, gold in rng.sample(golds, 22):
        n = int(gold)
        sep = rng.choice(seps)
        rows.append(("grouping", gold, rng.choice(wrappers).format(_group(n, sep)), True, source))
    for source, gold in rng.sample(golds, 16):
        grouped = _group(int(gold), rng.choice(seps))
        wrong = _other_digit(grouped, rng)
        rows.append(("grouping", gold, wrong, False, source))
    return rows


def decimal_comma(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    usable = [(s, g) for s, g in golds if not (len(g.split(".")[1]) == 3 and 1 <= len(g.split(".")[0].lstrip("-")) <= 3
                                               and not g.lstrip("-").startswith("0"))]
    for source, gold in rng.sample(usable, 20):
        whole, frac = gold.split(".")
        body = f"{whole},{frac}"
        if len(whole.lstrip("-")) > 3 and rng.random() < 0.5:
            body = f"{int(whole):,}".replace(",", ".") + f",{frac}"  # 1.234,5
        rows.append(("decimal_comma", gold, rng.choice(["{}", "${}$", "{} cm"]).format(body),
                     True, source))
    for source, gold in rng.sample(usable, 16):
        whole, frac = gold.split(".")
        wrong = _other_digit(f"{whole},{frac}", rng)
        rows.append(("decimal_comma", gold, wrong, False, source))
    return rows


_SENTENCES = [
    "The answer is ${}$.", "Answer: ${}$", "So the final answer is ${}$.", "Therefore, the value is ${}$.",
    "\\textbf{Answer:} ${}$", "Final answer: {}", "We conclude that the answer is {}.", "It equals ${}$.",
    "Hence the result is \\({}\\).", "After simplifying we obtain ${}$.",
]


def _fill(template: str, *values: str) -> str:
    """``template`` with each ``{}`` replaced in turn (LaTeX braces elsewhere are left alone)."""
    for value in values:
        template = template.replace("{}", value, 1)
    return template


def wrapped(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    picks = [(s, g) for s, g in golds if "$" not in g and "\\text" not in g and "," not in g]
    for source, gold in rng.sample(picks, 22):
        rows.append(("wrapped", gold, _fill(rng.choice(_SENTENCES), gold), True, source))
    numeric = [(s, g) for s, g in picks if re.fullmatch(r"-?\d+", g)]
    for source, gold in rng.sample(numeric, 16):
        other = str(int(gold) + rng.choice([-3, -2, -1, 1, 2, 3, 10]))
        template = rng.choice(_SENTENCES + ["We first get ${}$, then check it and get ${}$."])
        text = _fill(template, gold, other) if template.count("{}") == 2 else _fill(template, other)
        rows.append(("wrapped", gold, text, False, source))
    return rows


def mixed(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    improper = []
    for source, gold in golds:
        m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold)
        if m and int(m.group(2)) > int(m.group(3)) > 1 and int(m.group(2)) % int(m.group(3)):
            improper.append((source, gold, m.group(1), Fraction(int(m.group(2)), int(m.group(3)))))
    forms = ["{w} {r}/{d}", "{w}\\frac{{{r}}}{{{d}}}", "{w} \\tfrac{{{r}}}{{{d}}}", "${w}\\frac{{{r}}}{{{d}}}$",
             "{w} \\dfrac{{{r}}}{{{d}}}"]
    for source, gold, sign, q in rng.sample(improper, 20):
        w, r = divmod(q.numerator, q.denominator)
        rows.append(("mixed_number", gold, sign + rng.choice(forms).format(w=w, r=r, d=q.denominator), True, source))
    for source, gold, sign, q in rng.sample(improper, 16):
        w, r = divmod(q.numerator, q.denominator)
        wrong_w = w + rng.choice([-1, 1]) if w > 1 else w + 1
        form = rng.choice(forms)
        if rng.random() < 0.5:  # the whole part off by one
            text = sign + form.format(w=wrong_w, r=r, d=q.denominator)
        else:  # the fraction alone (the whole part dropped)
            text = sign + f"\\frac{{{r}}}{{{q.denominator}}}"
        rows.append(("mixed_number", gold, text, False, source))
    return rows


def percent(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    pct = [(s, g, Fraction(g.replace("\\%", ""))) for s, g in golds if re.fullmatch(r"\d+(?:\.\d+)?\\%", g)]
    for source, gold, p in pct:
        value = p / 100
        rows.append(("percent", gold, _dec(value), True, source))
        rows.append(("percent", gold, _dec(value / 10), False, source))
    # Decimal references between 0 and 1 and the percent people write for them.
    fracs = []
    for source, gold in golds:
        m = re.fullmatch(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold)
        if m:
            q = Fraction(int(m.group(1)), int(m.group(2)))
            if 0 < q < 1 and (q * 1000).denominator == 1:
                fracs.append((source, gold, q))
    forms = ["{}\\%", "{}%", "${}\\%$", "{} percent"]
    for source, gold, q in rng.sample(fracs, min(18, len(fracs))):
        rows.append(("percent", gold, rng.choice(forms).format(_dec(q * 100)), True, source))
    for source, gold, q in rng.sample(fracs, min(10, len(fracs))):
        rows.append(("percent", gold, rng.choice(forms).format(_dec(q * 10)), False, source))
    return rows


def _dec(q: Fraction) -> str:
    digits = 0
    while (q * 10**digits).denominator != 1:
        digits += 1
    return f"{float(q):.{digits}f}" if digits else str(q.numerator)


def approximation(golds: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    import sympy
    from latex2sympy2_extended import latex2sympy

    rows = []
    symbolic = []
    for source, gold in golds:
        if ("\\pi" in gold or "\\sqrt" in gold) and re.fullmatch(r"[-\\\w{}+ ]+", gold) and "^" not in gold:
            try:
                value = sympy.N(latex2sympy(gold), 30)
            except Exception:  # noqa: BLE001 - a reference latex2sympy cannot read is just not used
                continue
            if value.is_real and not value.free_symbols and 0.01 < abs(value) < 10**5:
                symbolic.append((source, gold, Decimal(str(value))))
    for source, gold, v in rng.sample(symbolic, 20):
        digits = rng.choice([4, 5, 6, 7])
        decimals = max(1, digits - 1 - v.copy_abs().adjusted())
        rounding = rng.choice([ROUND_HALF_UP, ROUND_DOWN])
        text = str(v.quantize(Decimal(1).scaleb(-decimals), rounding=rounding))
        rows.append(("approximation", gold, rng.choice(["{}", "\\approx {}", "${}$"]).format(text), True, source))
    for source, gold, v in rng.sample(symbolic, 16):
        decimals = max(1, 4 - 1 - v.copy_abs().adjusted())
        text = str(v.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
        # the third significant digit changed by 2 or more: off at any reading
        digit_positions = [i for i, ch in enumerate(text) if ch.isdigit() and (ch != "0" or any(c in "123456789" for c in text[:i]))]
        i = digit_positions[2]
        new = str((int(text[i]) + rng.choice([2, 3, 4, 5, 6, 7])) % 10)
        rows.append(("approximation", gold, text[:i] + new + text[i + 1 :], False, source))
    return rows


def build(data: Path, seed: int = 25) -> list[dict]:
    rng = random.Random(seed)
    gsm = gsm8k_golds(data / "gsm8k" / "test.jsonl")
    math = math_golds(data / "math" / "test.jsonl")
    rows = []
    rows += grouping([x for x in gsm if re.fullmatch(r"[1-9]\d{3,}", x[1])], rng)
    rows += decimal_comma([x for x in gsm + math if re.fullmatch(r"-?\d+\.\d+", x[1])], rng)
    rows += wrapped(gsm + math, rng)
    rows += mixed(math, rng)
    rows += percent(math + gsm, rng)
    rows += approximation(math, rng)
    return [{"kind": k, "reference": r, "response": s, "label": lab, "source": src} for k, r, s, lab, src in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in build(_data_dir()))
    if args.check:
        same = args.output.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.output} differs from what this script writes")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} pairs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
