"""What every code task shares: problems whose payload is a test spec, a named extraction policy, and
a task-specific prompt (APPS, HumanEval and MBPP each have a standard prompt text).

    problem = CodeProblem("apps/train/0001", question, {"tests": tests}, level=2, extraction="auto")
    problem.verifier_row(response)     # {"id", "tests", "response": <the program extracted from response>}
    task = CodeTask("apps", "code", train, test, instruction, fewshot, prompt=TaskPrompt(...))

``TaskPrompt`` (rest_em.tasks.base) is how a task brings its own prompt text to ``rest_em.prompts``: ``chat_user(problem)``
is the user message under the model's chat template; ``text(problem, fewshot)`` is the plain-text
prompt for base models (APPS "QUESTION: ... ANSWER:", HumanEval's bare function prompt to be continued,
MBPP's "[BEGIN] ... [DONE]"); ``stop`` ends a plain-text completion before the model starts the next
example; ``chat_stop`` ends a chat answer (``CHAT_STOP``: the end of its first code block, so the answer
is one program and sampling stops there instead of writing explanations and "example usage" blocks that
the last-block extraction would pick up). The code-extraction policy (``verifiers.code.extract.POLICIES``) is applied here, before the
row reaches the verifier, so a task and its config choose it, whichever verifier (local or remote)
scores the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from rest_em.tasks.base import Problem, Task
from verifiers.code.extract import POLICIES, extract_code

logger = logging.getLogger(__name__)

DEFAULT_EXTRACTION = "auto"  # the last fenced block when there is one, else the whole response
# A chat answer ends with its first closed code block ("```python\n...\n```\n"); the opening fence names a
# language, so it does not match. The extraction reads the block, left unclosed by the stop, to its end.
CHAT_STOP = ("\n```\n",)


def check_extraction(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown code extraction policy {policy!r}; choose one of {', '.join(sorted(POLICIES))}")
    return policy


@dataclass(frozen=True)
class CodeProblem(Problem):
    """A problem verified by running tests; ``payload = {"tests": {...}}`` (a ``verifiers.code`` test spec)."""

    extraction: str = DEFAULT_EXTRACTION
    starter_code: str = ""  # APPS starter code (a signature or a class Solution stub), shown in the prompt
    entry_point: str = ""  # the function the tests call, when the task names it (task `dataset`)

    @property
    def tests(self) -> dict[str, Any]:
        return self.payload["tests"]

    def verifier_row(self, response: str, sample_idx: int | None = None) -> dict[str, Any]:
        # The verifier's own "auto" policy leaves an already-extracted program as it is.
        return super().verifier_row(extract_code(response, self.extraction), sample_idx)


@dataclass
class CodeTask(Task):
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> problems left out while loading


def fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def pick_fewshot(pool: Sequence[Problem], num: int, seed: int, max_chars: int = 1200) -> list[Problem]:
    """``num`` short solved problems from ``pool``, a seeded choice in a stable order."""
    import random

    short = sorted((p for p in pool if p.solution and len(p.solution) + len(p.question) <= max_chars),
                   key=lambda p: p.problem_id)
    if len(short) < num:
        logger.warning("only %d short solved problems for %d few-shot examples", len(short), num)
    return random.Random(seed).sample(short, min(num, len(short)))
