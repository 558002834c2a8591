"""APPS (Hendrycks et al. 2021): programming problems checked by their input/output tests.

    problems, skipped = load_apps("train", path=None, hub_name="codeparrot/apps")
    load_apps("test", path="../shared/data/apps/apps_10.jsonl")                  # HF layout, JSONL
    load_apps("train", path="../shared/data/apps/original_layout_train")         # original folders

Two layouts are read:

- **Hugging Face** ``codeparrot/apps`` (hub, or local JSONL/parquet in its layout): ``problem_id``,
  ``question``, ``input_output`` (a JSON *string* with ``inputs``, ``outputs`` and an optional
  ``fn_name``), ``starter_code``, ``difficulty``, optional ``solutions`` (a JSON string list).
- **Original APPS folders** ``NNNN/``: ``question.txt``, ``input_output.json``, ``solutions.json``,
  ``metadata.json`` (``difficulty``), optional ``starter_code.py``.

A problem with ``fn_name`` is call-based (the tests call that function, or a method of ``class
Solution``); without it the program reads standard input. Problems without tests (no or empty
``input_output``) are skipped and counted, never scored: a problem with nothing to check cannot pass.
Difficulty is the problem level: 1 = introductory, 2 = interview, 3 = competition (``task.levels``).

The prompt is the APPS standard format (``generate_gpt_codes.py`` upstream)::

    \\nQUESTION:\\n<question>\\n<starter code>\\nUse Call-Based format\\nANSWER:\\n
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rest_em.tasks.base import Problem, TaskPrompt
from rest_em.tasks.code_common import CHAT_STOP, DEFAULT_EXTRACTION, CodeProblem, check_extraction, fenced
from rest_em.tasks.math_data import data_dir, read_hub, read_rows
from verifiers.code.datasets import apps_tests
from verifiers.io import InputError

logger = logging.getLogger(__name__)

DIFFICULTIES = {"introductory": 1, "interview": 2, "competition": 3}
LEVEL_NAMES = {v: k for k, v in DIFFICULTIES.items()}
DEFAULT_FILES = {"train": "apps/original_layout_train", "test": "apps/apps_10.jsonl"}
INSTRUCTION = "Write a complete Python 3 solution in a single ```python code block."
STOP = ("\nQUESTION:",)


def difficulty_level(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lower() in DIFFICULTIES:
        return DIFFICULTIES[value.strip().lower()]
    raise InputError(f"{where}: 'difficulty' must be one of {', '.join(DIFFICULTIES)}, got {value!r}")


def _tests(input_output: Any, where: str) -> tuple[dict[str, Any] | None, str | None]:
    """The test spec, or (None, reason) for a problem that has no usable tests."""
    if input_output is None or (isinstance(input_output, str) and not input_output.strip()):
        return None, "no_tests"
    try:
        io = json.loads(input_output) if isinstance(input_output, str) else input_output
    except json.JSONDecodeError as exc:
        logger.warning("%s: input_output is not valid JSON (%s): problem skipped", where, exc)
        return None, "malformed_tests"
    if not isinstance(io, dict) or not io.get("inputs"):
        return None, "no_tests"
    if not isinstance(io.get("outputs"), list) or len(io["outputs"]) != len(io["inputs"]):
        logger.warning("%s: input_output has %s outputs for %d inputs: problem skipped", where,
                       len(io.get("outputs") or []), len(io["inputs"]))
        return None, "malformed_tests"
    if io.get("fn_name") and not all(isinstance(a, list) for a in io["inputs"]):
        logger.warning("%s: call-based inputs must be argument lists: problem skipped", where)
        return None, "malformed_tests"
    return apps_tests(io), None


def _first_solution(solutions: Any, where: str) -> str | None:
    if isinstance(solutions, str):
        if not solutions.strip():
            return None
        try:
            solutions = json.loads(solutions)
        except json.JSONDecodeError:
            logger.warning("%s: solutions is not valid JSON; no reference solution", where)
            return None
    if isinstance(solutions, list) and solutions and isinstance(solutions[0], str):
        return solutions[0]
    return None


def apps_problem(
    row: dict[str, Any], where: str, split: str, extraction: str = DEFAULT_EXTRACTION,
) -> tuple[CodeProblem | None, str | None]:
    """One problem from a row in the Hugging Face layout, or ``(None, reason)`` when it has no tests."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: field 'question' must be a non-empty string")
    pid = row.get("problem_id")
    if not isinstance(pid, (int, str)) or isinstance(pid, bool) or str(pid) == "":
        raise InputError(f"{where}: field 'problem_id' must be an integer or string")
    level = difficulty_level(row.get("difficulty"), where)
    tests, reason = _tests(row.get("input_output"), where)
    if tests is None:
        return None, reason
    starter = row.get("starter_code") or ""
    if not isinstance(starter, str):
        raise InputError(f"{where}: field 'starter_code' must be a string")
    return CodeProblem(
        problem_id=f"apps/{split}/{int(pid):04d}" if str(pid).isdigit() else f"apps/{split}/{pid}",
        question=question, payload={"tests": tests}, level=level,
        solution=_first_solution(row.get("solutions"), where), extraction=extraction, starter_code=starter,
    ), None


def read_original_layout(root: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows in the Hugging Face layout from original APPS folders ``root/NNNN/``, in folder order."""
    root = Path(root).expanduser()
    folders = sorted(d for d in root.iterdir() if d.is_dir() and (d / "question.txt").exists())
    if not folders:
        raise InputError(f"{root}: no APPS problem folders (NNNN/question.txt)")
    for d in folders:
        meta_path = d / "metadata.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        except json.JSONDecodeError as exc:
            raise InputError(f"{meta_path}: not valid JSON: {exc}") from None
        row: dict[str, Any] = {
            "problem_id": d.name,
            "question": (d / "question.txt").read_text(encoding="utf-8"),
            "difficulty": meta.get("difficulty"),
            "url": meta.get("url"),
            "starter_code": (d / "starter_code.py").read_text(encoding="utf-8") if (d / "starter_code.py").exists() else "",
            # Kept as text, as the Hugging Face copy stores them; parsed (and checked) by apps_problem.
            "input_output": (d / "input_output.json").read_text(encoding="utf-8") if (d / "input_output.json").exists() else "",
            "solutions": (d / "solutions.json").read_text(encoding="utf-8") if (d / "solutions.json").exists() else "",
        }
        yield str(d), row


# Hub datasets that are loading scripts: `datasets` >= 4 refuses to run them ("Dataset scripts are no
# longer supported"), online or not.
SCRIPT_DATASETS = ("codeparrot/apps",)
APPS_RELEASE = "https://people.eecs.berkeley.edu/~hendrycks/APPS.tar.gz"


def hub_failure_cause(hub_name: str, exc: Exception) -> str:
    """Why ``hub_name`` did not load, in words that point at the fix."""
    name = hub_name.partition(":")[0]
    if name in SCRIPT_DATASETS or "scripts are no longer supported" in str(exc):
        return (f"{name} is a loading-script dataset, which `datasets` >= 4 refuses to run (here: {type(exc).__name__}: "
                f"{exc})")
    return f"{type(exc).__name__}: {exc}"


def _rows(split: str, path: str | Path | None, hub_name: str | None,
          on_hub_failure: Callable[[str], None] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    if hub_name:
        try:
            return iter(list(read_hub(hub_name, split)))
        except Exception as exc:  # no network, no such dataset, a loader script datasets refuses: local files
            cause = hub_failure_cause(hub_name, exc)
            logger.warning("could not load %s[%s] from the hub (%s); using local files", hub_name, split, cause)
            if on_hub_failure is not None:
                on_hub_failure(cause)
    local = Path(path).expanduser() if path else data_dir() / DEFAULT_FILES[split]
    if local.is_dir():
        return read_original_layout(local)
    return read_rows(local)


def load_apps(
    split: str, path: str | Path | None = None, hub_name: str | None = None, extraction: str = DEFAULT_EXTRACTION,
    on_hub_failure: Callable[[str], None] | None = None,
) -> tuple[list[CodeProblem], Counter[str]]:
    """Every problem of ``split`` that has tests, and the count of skipped problems by reason.

    ``on_hub_failure(cause)`` is called when ``hub_name`` was asked for but the local files were read instead."""
    check_extraction(extraction)
    problems: list[CodeProblem] = []
    skipped: Counter[str] = Counter()
    for where, row in _rows(split, path, hub_name, on_hub_failure):
        problem, reason = apps_problem(row, where, split, extraction)
        if problem is None:
            skipped[reason or "no_tests"] += 1
        else:
            problems.append(problem)
    if skipped:
        logger.warning("APPS %s: skipped %d problems without usable tests (%s)", split, sum(skipped.values()),
                       ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    levels = Counter(LEVEL_NAMES[p.level] for p in problems if p.level is not None)
    logger.info("loaded %d APPS %s problems (%s)", len(problems), split, dict(levels))
    return problems, skipped


# ------------------------------------------------------------------------------------------ prompts

def _is_call(problem: Problem) -> bool:
    return problem.payload["tests"]["style"] == "call"


def apps_question(problem: Problem) -> str:
    """The APPS standard prompt of one problem, up to and including ``ANSWER:\\n``."""
    text = "\nQUESTION:\n" + problem.question
    starter = getattr(problem, "starter_code", "")
    if starter:
        text += "\n" + starter
    text += "\nUse Call-Based format" if _is_call(problem) else "\nUse Standard Input format"
    return text + "\nANSWER:\n"


def apps_text(problem: Problem, fewshot: Sequence[Problem]) -> str:
    """Base-model prompt: solved examples in the same format, then the problem."""
    shots = "".join(f"{apps_question(ex)}{ex.solution.rstrip()}\n" for ex in fewshot if ex.solution)
    return shots + apps_question(problem)


def apps_chat(problem: Problem) -> str:
    how = ("Complete the starter code; your function is called with the test arguments and must return the answer."
           if _is_call(problem) else "Your program reads standard input and prints the answer to standard output.")
    return f"{apps_question(problem).strip()}\n\n{how} {INSTRUCTION}"


PROMPT = TaskPrompt(chat_user=apps_chat, text=apps_text, stop=STOP, chat_stop=CHAT_STOP)


def reference_response(problem: Problem) -> str:
    """A response that carries the problem's reference solution, as a chat model would write it."""
    if problem.solution is None:
        raise ValueError(f"{problem.problem_id} has no reference solution")
    return fenced(problem.solution)
