"""MATH and GSM8K, from the Hugging Face hub or from local files in the upstream field layout.

    rows = read_rows("../shared/data/math/train.jsonl")            # JSONL or parquet
    problems = [math_problem(row, where, split="train") for where, row in rows]

Field layouts (kept as upstream publishes them):

- MATH (Hendrycks): ``problem``, ``solution`` (final answer in ``\\boxed{}``), ``level`` ("Level 3",
  "Level ?"), ``type``, optional ``unique_id``. MATH500 adds ``answer`` and an integer ``level``.
- GSM8K: ``question``, ``answer`` (worked solution ending with ``#### 72``).

A malformed row raises ``verifiers.io.InputError`` naming the file and line.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

from rest_em.tasks.base import Problem
from verifiers.io import InputError, read_jsonl

logger = logging.getLogger(__name__)

MATH_INSTRUCTION = "Put your final answer within \\boxed{}."
GSM8K_INSTRUCTION = "Put your final answer within \\boxed{}."


def data_dir() -> Path:
    """The shared data folder: ``$REST_EM_DATA_DIR``, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("REST_EM_DATA_DIR", "../shared/data")).expanduser()


def read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)`` from a JSONL or parquet file; ``where`` is ``file:line`` (or ``file:row N``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such data file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path}:row {i}", row
        return
    for lineno, row in read_jsonl(path):
        yield f"{path}:{lineno}", row


def read_hub(hub_name: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a hub dataset (``name`` or ``name:config``); raises when the hub cannot be reached."""
    import datasets

    name, _, config = hub_name.partition(":")
    ds = datasets.load_dataset(name, config or None, split=split)
    for i, row in enumerate(ds, start=1):
        yield f"{hub_name}[{split}]:row {i}", dict(row)


def _text_field(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in row else f"{type(value).__name__} {str(value)[:40]!r}"
        raise InputError(f"{where}: field {key!r} must be a non-empty string ({got})")
    return value


def parse_level(value: Any, where: str) -> int | None:
    """``"Level 3"`` or ``3`` -> 3; ``"Level ?"`` (two MATH train files) or absent -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:Level\s*)?(\d+|\?)\s*", value)
        if m:
            return None if m.group(1) == "?" else int(m.group(1))
    raise InputError(f"{where}: field 'level' must look like 'Level 3' or 3, got {value!r}")


def math_problem(row: dict[str, Any], where: str, split: str, index: int) -> Problem:
    question = _text_field(row, "problem", where)
    solution = _text_field(row, "solution", where)
    uid = row.get("unique_id")
    problem_id = f"math/{uid}" if isinstance(uid, str) and uid else f"math/{split}/{index:05d}"
    if isinstance(row.get("answer"), str) and row["answer"].strip():
        payload = {"reference": row["answer"], "reference_format": "answer"}
    else:
        payload = {"reference": solution, "reference_format": "math_solution"}
    return Problem(problem_id, question, payload, parse_level(row.get("level"), where), solution)


def gsm8k_problem(row: dict[str, Any], where: str, split: str, index: int) -> Problem:
    question = _text_field(row, "question", where)
    answer = _text_field(row, "answer", where)
    if "####" not in answer:
        raise InputError(f"{where}: field 'answer' has no '#### <final answer>' line")
    return Problem(f"gsm8k/{split}/{index:05d}", question, {"reference": answer, "reference_format": "gsm8k"},
                   None, gsm8k_solution_text(answer))


def gsm8k_solution_text(answer: str) -> str:
    """GSM8K's worked answer as a few-shot solution: calculator marks removed, ``#### N`` boxed."""
    body, _, final = answer.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe final answer is \\boxed{{{final.strip()}}}."


DEFAULT_FILES = {
    ("math", "train"): "math/train.jsonl",
    ("math", "test"): "math/math500.jsonl",
    ("gsm8k", "train"): "gsm8k/train.jsonl",
    ("gsm8k", "test"): "gsm8k/test.jsonl",
}


def load_split(dataset: str, split: str, path: str | None, hub_name: str | None) -> list[Problem]:
    """Every problem of one split: from the hub when ``hub_name`` is set and reachable, else from ``path``."""
    make = math_problem if dataset == "math" else gsm8k_problem
    rows: Iterator[tuple[str, dict[str, Any]]] | None = None
    if hub_name:
        try:
            rows = iter(list(read_hub(hub_name, split)))
        except Exception as exc:  # no network, no such dataset: fall back to the local files
            logger.warning("could not load %s[%s] from the hub (%s); using local files", hub_name, split, exc)
    if rows is None:
        rows = read_rows(path or data_dir() / DEFAULT_FILES[(dataset, split)])
    problems = [make(row, where, split, i) for i, (where, row) in enumerate(rows)]
    logger.info("loaded %d %s %s problems", len(problems), dataset, split)
    return problems
