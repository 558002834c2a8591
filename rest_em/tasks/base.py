"""What a task is: problems, a prompt instruction, few-shot examples and a verifier domain.

A ``Problem`` carries the verifier payload as plain data, so one shape serves every domain:

    math: payload = {"reference": "38", "reference_format": "answer"}      # or math_solution, gsm8k
    code: payload = {"tests": {...}}                                        # APPS/HumanEval/MBPP (later)

``Problem.verifier_row(response)`` is the row the verifier's ``parse_item`` reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Problem:
    problem_id: str
    question: str
    payload: dict[str, Any]  # verifier input besides the response (reference/tests)
    level: int | None = None  # difficulty level; None when the source has none ("Level ?")
    solution: str | None = None  # a worked solution, used for few-shot prompts only
    # The source row as read (task `dataset`, `reasoning_gym`): what a custom verifier sees as problem["columns"].
    columns: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # The problem as chat messages (a veRL `prompt` column), rendered with the chat template as they are.
    messages: tuple[dict[str, str], ...] | None = field(default=None, compare=False, repr=False)

    def verifier_row(self, response: str, sample_idx: int | None = None) -> dict[str, Any]:
        row_id = self.problem_id if sample_idx is None else f"{self.problem_id}#{sample_idx}"
        return {"id": row_id, **self.payload, "response": response}

    def custom_row(self, response: str, sample_idx: int | None = None) -> dict[str, Any]:
        """The row a custom verifier (``verifiers.custom``) reads: the whole response, the reference (the
        answer, or the test spec of a code problem) and the problem with its source columns."""
        row_id = self.problem_id if sample_idx is None else f"{self.problem_id}#{sample_idx}"
        columns = self.columns or {}
        reference = self.payload["reference"] if "reference" in self.payload else self.payload.get("tests")
        problem = {"id": self.problem_id, "question": self.question, "level": self.level,
                   "data_source": columns.get("data_source") if isinstance(columns.get("data_source"), str) else None,
                   "columns": columns}
        return {"id": row_id, "response": response, "reference": reference, "problem": problem}


@dataclass(frozen=True)
class TaskPrompt:
    """A task's own prompt text, for tasks with a standard prompt (APPS, HumanEval, MBPP, code_embedded).

    ``chat_user(problem)`` is the user message under the model's chat template; ``text(problem, fewshot)``
    the plain-text prompt for base models; ``stop`` ends a plain-text completion before the model starts
    the next example; ``chat_stop`` ends a chat answer. Tasks without one get the generic
    "question + instruction" prompts of rest_em.prompts.
    """

    chat_user: Callable[[Problem], str]
    text: Callable[[Problem, Sequence[Problem]], str]
    stop: tuple[str, ...] = ()
    chat_stop: tuple[str, ...] = ()
    # The whole chat (system and user messages) when the task brings its own, e.g. a veRL `prompt` column;
    # None = one user message, `chat_user(problem)`.
    chat_messages: Callable[[Problem], list[dict[str, str]]] | None = None


@dataclass
class Task:
    """A train split to improve on, a test split to measure, and how to prompt and verify them."""

    name: str
    domain: str  # verifier domain (rest_em passes it to verifiers.registry.get_verifier)
    train: list[Problem]
    test: list[Problem]
    instruction: str  # appended to every question, e.g. "Give the final answer as \\boxed{N}."
    fewshot: list[Problem] = field(default_factory=list)  # solved examples for base-model prompts
    prompt: TaskPrompt | None = None  # the task's own prompt text; None = rest_em.prompts' generic prompts
    # "module:function" of the task's own verifier (reasoning_gym's score_answer), run by verifiers.custom;
    # `verifier.custom` overrides it. None = the domain's verifier.
    custom_verifier: str | None = None
    # What loading the data found (task `dataset`: rows read, skipped with reasons); written to data.json.
    data_info: dict[str, Any] | None = None

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


def draw_splits(
    name: str, seed_key: str, counts: Sequence[tuple[str, int]], levels: Sequence[int], level_weights: Sequence[float] | None,
    known_levels: Sequence[int], draw: Callable[[random.Random, int], tuple[str, Any]],
    make: Callable[[str, int, int, str, Any], Problem],
) -> dict[str, list[Problem]]:
    """Generated splits with no question in two of them, deterministic in every argument.

    ``counts`` names the splits in drawing order (test first, so changing the train size never changes
    the test problems). Each problem's level is drawn with ``level_weights`` (equal when None);
    ``draw(rng, level)`` returns ``(question, instance)`` and ``make(split, index, level, question,
    instance)`` builds the problem.
    """
    levels = list(levels)
    if not levels or any(lv not in known_levels for lv in levels):
        raise ValueError(f"{name}: levels must be a non-empty subset of {list(known_levels)}, got {levels}")
    weights = list(level_weights) if level_weights is not None else [1.0] * len(levels)
    if len(weights) != len(levels) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{name}: level_weights {weights} must be {len(levels)} non-negative numbers")
    rng = random.Random(seed_key)
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {split: [] for split, _ in counts}
    for split, count in counts:
        tries = 0
        while len(out[split]) < count:
            tries += 1
            if tries > 100 * count + 1000:
                raise ValueError(f"{name}: cannot draw {count} distinct {split} problems at levels {levels}")
            level = rng.choices(levels, weights)[0]
            question, instance = draw(rng, level)
            if question in seen:
                continue
            seen.add(question)
            out[split].append(make(split, len(out[split]), level, question, instance))
    return out
