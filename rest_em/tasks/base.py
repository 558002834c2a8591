"""What a task is: problems, a prompt instruction, few-shot examples and a verifier domain.

A ``Problem`` carries the verifier payload as plain data, so one shape serves every domain:

    math: payload = {"reference": "38", "reference_format": "answer"}      # or math_solution, gsm8k
    code: payload = {"tests": {...}}                                        # APPS/HumanEval/MBPP (later)

``Problem.verifier_row(response)`` is the row the verifier's ``parse_item`` reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class Problem:
    problem_id: str
    question: str
    payload: dict[str, Any]  # verifier input besides the response (reference/tests)
    level: int | None = None  # difficulty level; None when the source has none ("Level ?")
    solution: str | None = None  # a worked solution, used for few-shot prompts only

    def verifier_row(self, response: str, sample_idx: int | None = None) -> dict[str, Any]:
        row_id = self.problem_id if sample_idx is None else f"{self.problem_id}#{sample_idx}"
        return {"id": row_id, **self.payload, "response": response}


@dataclass
class Task:
    """A train split to improve on, a test split to measure, and how to prompt and verify them."""

    name: str
    domain: str  # verifier domain (rest_em passes it to verifiers.registry.get_verifier)
    train: list[Problem]
    test: list[Problem]
    instruction: str  # appended to every question, e.g. "Give the final answer as \\boxed{N}."
    fewshot: list[Problem] = field(default_factory=list)  # solved examples for base-model prompts

    def problem_index(self) -> dict[str, Problem]:
        return {p.problem_id: p for p in (*self.train, *self.test)}


def select(
    problems: Sequence[Problem], num: int | None, seed: int, levels: Sequence[int] | None = None
) -> list[Problem]:
    """Keep ``levels`` (None = all), then a seeded random subset of ``num`` (None = all), in source order."""
    pool = [p for p in problems if levels is None or p.level in levels]
    if num is None or num >= len(pool):
        return list(pool)
    keep = set(random.Random(seed).sample(range(len(pool)), num))
    return [p for i, p in enumerate(pool) if i in keep]


def check_unique_ids(problems: Sequence[Problem], where: str) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.problem_id in seen:
            raise ValueError(f"{where}: duplicate problem_id {p.problem_id!r}")
        seen.add(p.problem_id)
