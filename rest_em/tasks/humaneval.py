"""HumanEval (Chen et al. 2021): 164 Python functions to complete, checked by ``check(candidate)``.

    problems = load_humaneval(path=None, hub_name=None)     # ../shared/data/humaneval/HumanEval.jsonl

The program that runs is the problem's prompt (signature and docstring) followed by the model's
completion, as in upstream ``human-eval``: a base model continues the prompt text itself (stopped at the
next top-level ``def``/``class``/``if``/``print``/``#``); a chat model is shown the prompt in a code
block and answers with the function, which, appended to the prompt, redefines it (the prompt's imports
and helper functions stay in scope). HumanEval has one split: as a transfer set every problem is a test
item; as a training task a seeded part of it is held out as the test split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from rest_em.tasks.base import Problem, TaskPrompt
from rest_em.tasks.code_common import CHAT_STOP, DEFAULT_EXTRACTION, CodeProblem, check_extraction
from rest_em.tasks.math_data import data_dir, read_hub, read_rows
from verifiers.code.datasets import humaneval_tests
from verifiers.io import InputError

logger = logging.getLogger(__name__)

DEFAULT_FILE = "humaneval/HumanEval.jsonl"
INSTRUCTION = "Answer with the complete function in a single ```python code block."
# The stop sequences of the Codex paper: the completion ends where the next top-level statement begins.
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def humaneval_problem(row: dict[str, Any], where: str, extraction: str = DEFAULT_EXTRACTION) -> CodeProblem:
    for key in ("task_id", "prompt", "entry_point", "test"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise InputError(f"{where}: field {key!r} must be a non-empty string")
    if "def check" not in row["test"]:
        raise InputError(f"{where}: field 'test' must define check(candidate)")
    return CodeProblem(problem_id=row["task_id"], question=row["prompt"], payload={"tests": humaneval_tests(row)},
                       level=None, solution=row.get("canonical_solution"), extraction=extraction)


def load_humaneval(path: str | Path | None = None, hub_name: str | None = None,
                   extraction: str = DEFAULT_EXTRACTION) -> list[CodeProblem]:
    check_extraction(extraction)
    rows = None
    if hub_name:
        try:
            rows = iter(list(read_hub(hub_name, "test")))
        except Exception as exc:  # no hub here: the local file
            logger.warning("could not load %s[test] from the hub (%s); using local files", hub_name, exc)
    if rows is None:
        rows = read_rows(Path(path).expanduser() if path else data_dir() / DEFAULT_FILE)
    problems = [humaneval_problem(row, where, extraction) for where, row in rows]
    logger.info("loaded %d HumanEval problems", len(problems))
    return problems


def humaneval_text(problem: Problem, fewshot: Sequence[Problem]) -> str:
    """Base models continue the function prompt itself (zero-shot, as upstream)."""
    return problem.question


def humaneval_chat(problem: Problem) -> str:
    return (f"Complete the following Python function.\n\n```python\n{problem.question.rstrip()}\n```\n\n"
            f"{INSTRUCTION}")


PROMPT = TaskPrompt(chat_user=humaneval_chat, text=humaneval_text, stop=STOP, chat_stop=CHAT_STOP)
