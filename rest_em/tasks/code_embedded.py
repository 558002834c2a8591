"""The embedded code task: short programming problems generated from templates and a seed (no download).

    train, test, fewshot = generate(num_train=48, num_test=48, seed=0, levels=[1, 2, 3])

Each template ("write a function that returns x plus C", "read two integers and print their product",
...) yields many instances (other constants, names, test inputs); train and test draw from the same
templates but never share an instance. Tests are exact and computed here from the template's own
rule, and every template carries a reference solution (checked against its tests in
``tests/rest_em/test_code_tasks.py``).

Levels:

1. call-based one-liners: a function of one argument (arithmetic, string reversal, max of a list)
2. standard input / output: read one or two lines, print one value
3. a loop or a condition, in either style (count vowels, digit sums, FizzBuzz variants, second largest)
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rest_em.tasks.base import Problem, TaskPrompt, draw_splits
from rest_em.tasks.code_common import CHAT_STOP, DEFAULT_EXTRACTION, CodeProblem, check_extraction, fenced

INSTRUCTION = "Write your solution in Python 3 inside a single ```python code block."
LEVELS = (1, 2, 3)
_FN_NAMES = ("solve", "compute", "transform", "answer", "result", "calc", "process", "get_value")
_WORDS = ("apple", "banana", "level", "rotor", "python", "kayak", "stats", "orange", "racecar", "noon", "planet",
          "river", "madam", "robot", "civic", "tiger", "refer", "garden", "window", "radar")


@dataclass(frozen=True)
class Instance:
    question: str
    tests: dict[str, Any]
    solution: str  # a reference program that passes ``tests``


Template = Callable[[random.Random], Instance]


def _call(fn: str, args: list[list[Any]], rule: Callable[..., Any]) -> dict[str, Any]:
    return {"style": "call", "fn_name": fn, "inputs": args, "outputs": [rule(*a) for a in args]}


def _stdio(inputs: list[str], rule: Callable[[str], str]) -> dict[str, Any]:
    return {"style": "stdio", "inputs": inputs, "outputs": [rule(i) for i in inputs]}


def _ints(rng: random.Random, k: int, lo: int = -50, hi: int = 99) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(k)]


def _word(rng: random.Random, lo: int = 3, hi: int = 9) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


# ------------------------------------------------------------------------------------- level 1

def _add_const(rng: random.Random) -> Instance:
    fn, c = rng.choice(_FN_NAMES), rng.randint(2, 99)
    return Instance(f"Write a Python function `{fn}(x)` that returns x plus {c}.",
                    _call(fn, [[x] for x in _ints(rng, 5)], lambda x: x + c), f"def {fn}(x):\n    return x + {c}\n")


def _mul_const(rng: random.Random) -> Instance:
    fn, c = rng.choice(_FN_NAMES), rng.randint(2, 19)
    return Instance(f"Write a Python function `{fn}(x)` that returns x multiplied by {c}.",
                    _call(fn, [[x] for x in _ints(rng, 5)], lambda x: x * c), f"def {fn}(x):\n    return x * {c}\n")


def _reverse(rng: random.Random) -> Instance:
    fn = rng.choice(_FN_NAMES)
    args = [[_word(rng)] for _ in range(4)] + [[""]]
    return Instance(f"Write a Python function `{fn}(s)` that returns the string s reversed.",
                    _call(fn, args, lambda s: s[::-1]), f"def {fn}(s):\n    return s[::-1]\n")


def _max_list(rng: random.Random) -> Instance:
    fn = rng.choice(_FN_NAMES)
    which, pick = rng.choice((("largest", max), ("smallest", min)))
    args = [[_ints(rng, rng.randint(1, 7))] for _ in range(5)]
    return Instance(f"Write a Python function `{fn}(nums)` that returns the {which} number in the list nums.",
                    _call(fn, args, pick), f"def {fn}(nums):\n    return {pick.__name__}(nums)\n")


def _square_plus(rng: random.Random) -> Instance:
    fn, c = rng.choice(_FN_NAMES), rng.randint(1, 20)
    return Instance(f"Write a Python function `{fn}(n)` that returns n squared plus {c}.",
                    _call(fn, [[x] for x in _ints(rng, 5, -20, 20)], lambda n: n * n + c),
                    f"def {fn}(n):\n    return n * n + {c}\n")


# ------------------------------------------------------------------------------------- level 2

def _two_ints(rng: random.Random) -> Instance:
    name, op, sym = rng.choice((("sum", lambda a, b: a + b, "+"), ("product", lambda a, b: a * b, "*"),
                                ("difference (the first minus the second)", lambda a, b: a - b, "-")))
    inputs = [f"{a} {b}\n" for a, b in (_ints(rng, 2, -100, 1000) for _ in range(5))]
    return Instance(
        f"Write a Python program that reads two integers from one line of standard input, separated by a space, "
        f"and prints their {name}.",
        _stdio(inputs, lambda s: f"{op(*map(int, s.split()))}\n"),
        f"a, b = map(int, input().split())\nprint(a {sym} b)\n")


def _scale_int(rng: random.Random) -> Instance:
    c = rng.randint(2, 30)
    inputs = [f"{x}\n" for x in _ints(rng, 5, -500, 500)]
    return Instance(f"Write a Python program that reads one integer n from standard input and prints n plus {c}.",
                    _stdio(inputs, lambda s: f"{int(s) + c}\n"), f"n = int(input())\nprint(n + {c})\n")


def _line_text(rng: random.Random) -> Instance:
    what, rule, code = rng.choice((("reversed", lambda s: s[::-1], "s[::-1]"),
                                   ("in upper case", str.upper, "s.upper()"),
                                   ("with its length after it, separated by a space", lambda s: f"{s} {len(s)}",
                                    "s + ' ' + str(len(s))")))
    inputs = [f"{_word(rng)}\n" for _ in range(5)]
    return Instance(f"Write a Python program that reads a word from standard input and prints it {what}.",
                    _stdio(inputs, lambda s: f"{rule(s.strip())}\n"), f"s = input().strip()\nprint({code})\n")


def _list_stat(rng: random.Random) -> Instance:
    name, pick = rng.choice((("largest", max), ("smallest", min), ("sum", sum)))
    inputs = [" ".join(map(str, _ints(rng, rng.randint(1, 8)))) + "\n" for _ in range(5)]
    return Instance(
        f"Write a Python program that reads integers separated by spaces from one line of standard input and "
        f"prints the {name} of them.",
        _stdio(inputs, lambda s: f"{pick(map(int, s.split()))}\n"),
        f"nums = list(map(int, input().split()))\nprint({pick.__name__}(nums))\n")


# ------------------------------------------------------------------------------------- level 3

def _count_chars(rng: random.Random) -> Instance:
    fn = rng.choice(_FN_NAMES)
    letter = rng.choice("aeiou")
    if rng.random() < 0.5:
        args = [[rng.choice(_WORDS) + _word(rng, 0, 4)] for _ in range(5)]
        return Instance(f"Write a Python function `{fn}(s)` that returns the number of vowels (a, e, i, o, u) in the "
                        f"lowercase string s.", _call(fn, args, lambda s: sum(ch in "aeiou" for ch in s)),
                        f"def {fn}(s):\n    return sum(1 for ch in s if ch in 'aeiou')\n")
    args = [[rng.choice(_WORDS) + _word(rng, 0, 4)] for _ in range(5)]
    return Instance(f"Write a Python function `{fn}(s)` that returns how many times the letter '{letter}' occurs "
                    f"in the string s.", _call(fn, args, lambda s: s.count(letter)),
                    f"def {fn}(s):\n    return s.count('{letter}')\n")


def _digit_sum(rng: random.Random) -> Instance:
    fn = rng.choice(_FN_NAMES)
    args = [[rng.randint(0, 10 ** rng.randint(1, 7))] for _ in range(5)]
    return Instance(f"Write a Python function `{fn}(n)` that returns the sum of the decimal digits of the "
                    f"non-negative integer n.", _call(fn, args, lambda n: sum(map(int, str(n)))),
                    f"def {fn}(n):\n    return sum(int(d) for d in str(n))\n")


def _palindrome(rng: random.Random) -> Instance:
    fn = rng.choice(_FN_NAMES)
    args = [[w] for w in rng.sample(_WORDS, 6)]
    return Instance(f"Write a Python function `{fn}(s)` that returns True if the string s reads the same "
                    f"forwards and backwards, and False otherwise.", _call(fn, args, lambda s: s == s[::-1]),
                    f"def {fn}(s):\n    return s == s[::-1]\n")


def _sum_multiples(rng: random.Random) -> Instance:
    fn, k = rng.choice(_FN_NAMES), rng.randint(2, 7)
    args = [[_ints(rng, rng.randint(0, 8), -30, 60)] for _ in range(5)]
    return Instance(f"Write a Python function `{fn}(nums)` that returns the sum of the numbers in the list nums "
                    f"that are divisible by {k}.", _call(fn, args, lambda nums: sum(x for x in nums if x % k == 0)),
                    f"def {fn}(nums):\n    return sum(x for x in nums if x % {k} == 0)\n")


def _fizz(rng: random.Random) -> Instance:
    k, word = rng.randint(2, 6), rng.choice(("Fizz", "Buzz", "Bing", "Zap"))
    inputs = [f"{n}\n" for n in rng.sample(range(1, 16), 4)]
    rule = lambda s: "".join(f"{word if i % k == 0 else i}\n" for i in range(1, int(s) + 1))  # noqa: E731
    return Instance(
        f"Write a Python program that reads an integer n from standard input and prints the numbers from 1 to n, "
        f"one per line, but prints {word} instead of every number divisible by {k}.",
        _stdio(inputs, rule),
        f"n = int(input())\nfor i in range(1, n + 1):\n    print('{word}' if i % {k} == 0 else i)\n")


def _count_words(rng: random.Random) -> Instance:
    sep, name = rng.choice(((" ", "spaces"), (",", "commas"), (";", "semicolons"), ("-", "hyphens")))
    inputs = [sep.join(_word(rng, 1, 6) for _ in range(rng.randint(1, 7))) + "\n" for _ in range(5)]
    return Instance(f"Write a Python program that reads one line of standard input and prints the number of words "
                    f"in it (words are separated by {name}).", _stdio(inputs, lambda s: f"{len(s.strip().split(sep))}\n"),
                    f"print(len(input().strip().split({sep!r})))\n")


TEMPLATES: dict[int, tuple[Template, ...]] = {
    1: (_add_const, _mul_const, _reverse, _max_list, _square_plus),
    2: (_two_ints, _scale_int, _line_text, _list_stat),
    3: (_count_chars, _digit_sum, _palindrome, _sum_multiples, _fizz, _count_words),
}


def generate(
    num_train: int, num_test: int, seed: int, levels: Sequence[int] = LEVELS,
    level_weights: Sequence[float] | None = None, num_fewshot: int = 2, extraction: str = DEFAULT_EXTRACTION,
) -> tuple[list[CodeProblem], list[CodeProblem], list[CodeProblem]]:
    """(train, test, fewshot), deterministic in every argument; no instance appears in two splits."""
    check_extraction(extraction)

    def draw(rng: random.Random, level: int) -> tuple[str, Instance]:
        inst = rng.choice(TEMPLATES[level])(rng)
        return inst.question, inst  # the same question is the same instance, whatever its test inputs

    def make(split: str, index: int, level: int, question: str, inst: Instance) -> CodeProblem:
        return CodeProblem(problem_id=f"code-{split}-{index:05d}", question=question, payload={"tests": inst.tests},
                           level=level, solution=fenced(inst.solution), extraction=extraction)

    out = draw_splits("code_embedded", f"rest-em-code-embedded:{seed}",
                      (("test", num_test), ("fewshot", num_fewshot), ("train", num_train)), levels, level_weights,
                      list(TEMPLATES), draw, make)
    return out["train"], out["test"], out["fewshot"]


def embedded_text(problem: Problem, fewshot: Sequence[Problem]) -> str:
    shots = "".join(f"Problem:\n{ex.question}\n\nSolution:\n{ex.solution}\n\n" for ex in fewshot)
    return f"{shots}Problem:\n{problem.question}\n\nSolution:\n"


def embedded_chat(problem: Problem) -> str:
    return f"{problem.question}\n\n{INSTRUCTION}"


PROMPT = TaskPrompt(chat_user=embedded_chat, text=embedded_text, stop=("\n\nProblem:", "\nProblem:"),
                    chat_stop=CHAT_STOP)
