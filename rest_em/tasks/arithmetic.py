"""The embedded task: arithmetic and algebra word problems, generated from a seed (no download).

Levels:

1. one step: ``a + b``, ``a - b`` or ``a x b`` in a one-sentence story
2. two steps: ``a + b - c``, ``a x b + c`` or ``(a - b) x c``
3. a linear equation ``a*x + b = c`` with an integer solution
4. two linear equations, or ``a*x + b = c*x + d``, with an integer solution

Every answer is an integer, checked by the math verifier (``reference_format: answer``). The same seed
always gives the same problems; train and test are drawn from one stream without repeats, so no test
question appears in the train split.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from rest_em.tasks.base import Problem, draw_splits

INSTRUCTION = "Give the final answer as \\boxed{N}."
LEVELS = (1, 2, 3, 4)

_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam", "Mia", "Noah")
_ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "coins", "cards", "shells", "stamps", "cookies")
_BOXES = ("boxes", "bags", "jars", "crates", "packs")

Generated = tuple[str, int, str]  # question, answer, worked solution


def _level1(rng: random.Random) -> Generated:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(5, 60), rng.randint(5, 40)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        return q, a + b, f"{a} + {b} = {a + b}."
    if kind == 1:
        a = rng.randint(20, 90)
        b = rng.randint(3, a - 5)
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        return q, a - b, f"{a} - {b} = {a - b}."
    a, b = rng.randint(2, 9), rng.randint(3, 12)
    box = rng.choice(_BOXES)
    q = f"{name} has {a} {box} with {b} {item} in each. How many {item} does {name} have?"
    return q, a * b, f"{a} * {b} = {a * b}."


def _level2(rng: random.Random) -> Generated:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(10, 50), rng.randint(5, 30)
        c = rng.randint(2, a + b - 2)
        q = f"{name} has {a} {item}, buys {b} more, then gives {c} to a friend. How many {item} does {name} have now?"
        return q, a + b - c, f"{a} + {b} = {a + b}, and {a + b} - {c} = {a + b - c}."
    if kind == 1:
        a, b, c = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 20)
        box = rng.choice(_BOXES)
        q = f"{name} has {a} {box} of {b} {item} and {c} loose {item}. How many {item} is that in total?"
        return q, a * b + c, f"{a} * {b} = {a * b}, and {a * b} + {c} = {a * b + c}."
    b = rng.randint(2, 20)
    a, c = b + rng.randint(2, 30), rng.randint(2, 6)
    q = f"Each of {c} friends had {a} {item} and lost {b}. How many {item} do they have together now?"
    return q, (a - b) * c, f"{a} - {b} = {a - b}, and {a - b} * {c} = {(a - b) * c}."


def _level3(rng: random.Random) -> Generated:
    x, a, b = rng.randint(-12, 15), rng.randint(2, 9), rng.choice([v for v in range(-20, 31) if v != 0])
    c = a * x + b
    sign, mag = ("+", b) if b >= 0 else ("-", -b)
    q = f"Solve for x: {a}x {sign} {mag} = {c}."
    return q, x, f"{a}x = {c} {'-' if b >= 0 else '+'} {mag} = {c - b}, so x = {c - b} / {a} = {x}."


def _level4(rng: random.Random) -> Generated:
    x = rng.randint(-10, 12)
    a, c = rng.sample(range(2, 10), 2)
    b = rng.choice([v for v in range(-15, 16) if v != 0])
    d = (a - c) * x + b
    q = f"Solve for x: {a}x + {b} = {c}x + {d}.".replace("+ -", "- ")
    return q, x, f"({a} - {c})x = {d} - ({b}), so {a - c}x = {d - b} and x = {x}."


_GENERATORS: dict[int, Callable[[random.Random], Generated]] = {1: _level1, 2: _level2, 3: _level3, 4: _level4}


def generate(
    num_train: int,
    num_test: int,
    seed: int,
    levels: Sequence[int] = LEVELS,
    level_weights: Sequence[float] | None = None,
    num_fewshot: int = 4,
) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """Return (train, test, fewshot) problems, deterministic in every argument.

    Levels are drawn with ``level_weights`` (equal when None). Questions never repeat across the
    three splits.
    """
    def draw(rng: random.Random, level: int) -> tuple[str, Generated]:
        generated = _GENERATORS[level](rng)
        return generated[0], generated

    def make(split: str, index: int, level: int, question: str, generated: Generated) -> Problem:
        _, answer, steps = generated
        return Problem(problem_id=f"arith-{split}-{index:05d}", question=question,
                       payload={"reference": str(answer), "reference_format": "answer"}, level=level,
                       solution=f"{steps} The final answer is \\boxed{{{answer}}}.")

    out = draw_splits("arithmetic", f"rest-em-arithmetic:{seed}",
                      (("test", num_test), ("fewshot", num_fewshot), ("train", num_train)), levels, level_weights,
                      list(_GENERATORS), draw, make)
    return out["train"], out["test"], out["fewshot"]
