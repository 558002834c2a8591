"""MBPP (Austin et al. 2021): short Python tasks checked by three ``assert`` lines each.

    train, test, fewshot_pool = load_mbpp(path=None, hub_name=None)   # ../shared/data/mbpp/mbpp.jsonl

Reads ``mbpp.jsonl`` (``text``, ``code``, ``test_list``, ``test_setup_code``) or the sanitized
``sanitized-mbpp.json`` (``prompt``, ``code``, ``test_list``, ``test_imports``). The upstream split is by
``task_id``: 1-10 are the few-shot prompt examples (never a train or test item), 11-510 test, 511-600
validation (unused here), 601-974 train.

The base-model prompt is the paper's::

    You are an expert Python programmer, and here is your task: <text> Your code should pass these tests:

    <assert lines>
    [BEGIN]
    <code>
    [DONE]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from rest_em.tasks.base import Problem, TaskPrompt
from rest_em.tasks.code_common import CHAT_STOP, DEFAULT_EXTRACTION, CodeProblem, check_extraction
from rest_em.tasks.math_data import data_dir, read_hub, read_rows
from verifiers.code.datasets import mbpp_tests
from verifiers.io import InputError

logger = logging.getLogger(__name__)

DEFAULT_FILE = "mbpp/mbpp.jsonl"
SPLITS = {"fewshot": range(1, 11), "test": range(11, 511), "validation": range(511, 601), "train": range(601, 975)}
# Austin et al. prompt with tasks 2, 3 and 4; the rest of 1-10 follow when more examples are asked for.
FEWSHOT_ORDER = (2, 3, 4, 1, 5, 6, 7, 8, 9, 10)
INSTRUCTION = "Write the Python function in a single ```python code block."
STOP = ("[DONE]",)


def split_of(task_id: int) -> str:
    for name, ids in SPLITS.items():
        if task_id in ids:
            return name
    return "train"  # ids past 974 (none upstream): extra training data


def mbpp_problem(row: dict[str, Any], where: str, extraction: str = DEFAULT_EXTRACTION) -> CodeProblem:
    text = row.get("text", row.get("prompt"))
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: field 'text' (or 'prompt' in sanitized MBPP) must be a non-empty string")
    tid = row.get("task_id")
    if not isinstance(tid, int) or isinstance(tid, bool):
        raise InputError(f"{where}: field 'task_id' must be an integer")
    tests = row.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise InputError(f"{where}: field 'test_list' must be a non-empty list of assert lines")
    code = row.get("code")
    return CodeProblem(problem_id=f"mbpp/{tid}", question=text.strip(), payload={"tests": mbpp_tests(row)},
                       level=None, solution=code.replace("\r\n", "\n") if isinstance(code, str) else None,
                       extraction=extraction)


def _read_local(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if path.suffix == ".json":  # sanitized-mbpp.json: one JSON list
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of tasks")
        for i, row in enumerate(rows):
            yield f"{path}[{i}]", row
        return
    yield from read_rows(path)


def load_mbpp(path: str | Path | None = None, hub_name: str | None = None, extraction: str = DEFAULT_EXTRACTION,
              ) -> dict[str, list[CodeProblem]]:
    """Problems by upstream split: ``fewshot`` (1-10), ``test``, ``validation``, ``train``, ids in order."""
    check_extraction(extraction)
    rows: list[tuple[str, dict[str, Any]]] | None = None
    if hub_name:
        try:
            rows = [r for split in ("train", "validation", "test", "prompt") for r in read_hub(hub_name, split)]
        except Exception as exc:  # no hub here: the local file
            logger.warning("could not load %s from the hub (%s); using local files", hub_name, exc)
    if rows is None:
        rows = list(_read_local(Path(path).expanduser() if path else data_dir() / DEFAULT_FILE))
    out: dict[str, list[CodeProblem]] = {name: [] for name in SPLITS}
    for where, row in rows:
        p = mbpp_problem(row, where, extraction)
        out[split_of(int(p.problem_id.split("/")[1]))].append(p)
    for problems in out.values():
        problems.sort(key=lambda p: int(p.problem_id.split("/")[1]))
    rank = {tid: i for i, tid in enumerate(FEWSHOT_ORDER)}
    out["fewshot"].sort(key=lambda p: rank.get(int(p.problem_id.split("/")[1]), len(rank)))
    logger.info("loaded MBPP: %s", {k: len(v) for k, v in out.items()})
    return out


def _task_block(problem: Problem) -> str:
    tests = "\n".join(problem.payload["tests"]["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {problem.question} "
            f"Your code should pass these tests:\n\n{tests}\n")


def mbpp_text(problem: Problem, fewshot: Sequence[Problem]) -> str:
    shots = "".join(f"{_task_block(ex)}[BEGIN]\n{ex.solution.strip()}\n[DONE]\n" for ex in fewshot if ex.solution)
    return f"{shots}{_task_block(problem)}[BEGIN]\n"


def mbpp_chat(problem: Problem) -> str:
    tests = "\n".join(problem.payload["tests"]["test_list"])
    return f"{problem.question} Your code should pass these tests:\n\n```python\n{tests}\n```\n\n{INSTRUCTION}"


PROMPT = TaskPrompt(chat_user=mbpp_chat, text=mbpp_text, stop=STOP, chat_stop=CHAT_STOP)
