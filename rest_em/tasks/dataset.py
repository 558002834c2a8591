"""``task.name: dataset``: your own problems, from a file or a hub dataset, mapped onto ours by column.

    task:
      name: dataset
      domain: math                       # or code
      train_path: data/train.jsonl       # .jsonl .json .parquet .csv, or a datasets.save_to_disk folder
      test_fraction: 0.2                 # no test file: a seeded share of the rows is the test split
      fields: {problem: question, answer: final, level: difficulty}

Our names (``task.fields`` maps each to the data's column; unmapped, the column of the same name is
used when the data has one): ``problem`` (a string, or a list of chat messages as in veRL's
``prompt`` column), ``id`` (default: the split and row number), ``answer`` (math: the bare reference
answer) or ``solution`` (math: a worked solution whose last ``\\boxed{}`` is the reference; few-shot
examples and ``hpt_gate`` use it), ``tests`` (code; ``task.tests_format`` says which shape),
``level`` (a number or a string: the report has a row per value), ``starter_code``, ``entry_point``.
Dotted names reach nested columns (``reward_model.ground_truth``).

Bad data gets a clear answer and loses nothing (docs/tasks.md lists every message):

- a row without a problem or a reference, or whose tests do not parse, is skipped, counted (the run
  directory's ``data.json``, shown in the report) and named by id in one warning;
- above ``task.max_bad_fraction`` of bad rows, ``DataError`` stops the run before any sampling,
  showing the first five bad rows with the reason for each;
- a duplicate id, or a mapped column the data does not have, is a ``DataError`` too.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rest_em.config import ConfigError, TaskSection
from rest_em.tasks.base import Problem, Task, TaskPrompt, select
from rest_em.tasks.code_common import CHAT_STOP, DEFAULT_EXTRACTION, CodeProblem, CodeTask, check_extraction
from rest_em.tasks.math_data import MATH_INSTRUCTION
from verifiers.io import InputError

logger = logging.getLogger(__name__)

OUR_FIELDS = ("problem", "id", "answer", "solution", "tests", "level", "starter_code", "entry_point")
TESTS_FORMATS = ("stdio", "asserts", "call")
# Our name -> the column names used when task.fields does not map it (the first one the data has):
# ours, then the common names of MATH, GSM8K, MBPP, APPS, HumanEval, veRL and TRL datasets.
COMMON_COLUMNS: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "question", "prompt", "query", "instruction"),
    "id": ("id", "unique_id", "problem_id", "task_id"),
    "answer": ("answer", "final_answer", "ground_truth", "reward_model.ground_truth"),
    "solution": ("solution",),
    "tests": ("tests", "test_list", "input_output", "test_cases"),
    "level": ("level", "difficulty"),
    "starter_code": ("starter_code",),
    "entry_point": ("entry_point", "fn_name"),
}
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_SHOW_IDS = 20  # ids named in the skipped-rows warning before "and N more"

CODE_INSTRUCTIONS = {
    "stdio": "Write a Python program that reads the input from standard input and prints the answer to standard "
             "output, in a single ```python code block.",
    "asserts": "Write the Python function in a single ```python code block.",
    "call": "Write the Python function in a single ```python code block.",
}


class DataError(ConfigError):
    """The data cannot run as configured: too many bad rows, a duplicate id, a missing column."""


# --------------------------------------------------------------------------- reading


@dataclass
class Table:
    """The rows of one split, each with where it came from, and the columns the source has."""

    source: str
    rows: list[tuple[str, dict[str, Any]]]
    columns: list[str]


def _columns_of(rows: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(k for _, row in rows for k in row))


def read_table(path: str | Path, split: str | None = None) -> Table:
    """Rows of a local ``.jsonl``, ``.json`` (a list of objects), ``.parquet`` or ``.csv`` file, or of a folder
    written by ``datasets.save_to_disk`` (a ``DatasetDict`` folder needs ``split``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_saved(path, split)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        from verifiers.io import read_jsonl

        try:
            rows = [(f"{path}:{lineno}", row) for lineno, row in read_jsonl(path)]
        except InputError as exc:
            raise DataError(str(exc)) from None
        bad = next(((w, r) for w, r in rows if not isinstance(r, dict)), None)
        if bad:
            raise DataError(f"{bad[0]}: expected a JSON object per line, got {type(bad[1]).__name__}")
        return Table(str(path), rows, _columns_of(rows))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); a .json file holds one list of objects (JSON Lines go in "
                            ".jsonl)") from None
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]}
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        rows = [(f"{path}[{i}]", r) for i, r in enumerate(data)]
        return Table(str(path), rows, _columns_of(rows))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = [(f"{path}:row {i}", r) for i, r in enumerate(table.to_pylist(), start=1)]
        return Table(str(path), rows, list(table.schema.names))
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for row in reader:
                rows.append((f"{path}:{reader.line_num}", {k: _csv_value(v) for k, v in row.items() if k is not None}))
            return Table(str(path), rows, list(reader.fieldnames or []))
    raise DataError(f"{path}: unknown data file type {path.suffix!r}; use {', '.join(FILE_SUFFIXES)} or a folder written "
                    "by datasets.save_to_disk")


def _csv_value(value: str | None) -> Any:
    """CSV cells are text: empty is missing, a whole number is a number (levels); the rest stays text."""
    if value is None or value == "":
        return None
    if re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _read_saved(path: Path, split: str | None) -> Table:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: a folder must be written by datasets.save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None or split not in ds:
            raise DataError(f"{path}: a DatasetDict with splits {', '.join(ds)}; set task.train_split / task.test_split "
                            f"to one of them (asked for {split!r})")
        ds = ds[split]
        where = f"{path}[{split}]"
    else:
        where = str(path)
    return Table(where, [(f"{where}:row {i}", dict(r)) for i, r in enumerate(ds, start=1)], list(ds.column_names))


def read_hub(hub_name: str, split: str) -> Table:
    """One split of a hub dataset (``name`` or ``name:config``) through ``datasets.load_dataset``; a local
    dataset folder or script works the same way."""
    import datasets

    name, _, config = hub_name.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:
        raise DataError(f"task.hub_name {hub_name!r}: could not load split {split!r} ({type(exc).__name__}: {exc}). "
                        "Without network, download it elsewhere and point task.train_path / task.test_path at the "
                        "files or at a datasets.save_to_disk folder") from None
    where = f"{hub_name}[{split}]"
    return Table(where, [(f"{where}:row {i}", dict(r)) for i, r in enumerate(ds, start=1)], list(ds.column_names))


# --------------------------------------------------------------------------- mapping

_MISSING = object()


def lookup(row: dict[str, Any], column: str) -> Any:
    """``row[column]``; a dotted name walks nested mappings (a column literally named with dots wins)."""
    if column in row:
        return row[column]
    node: Any = row
    for part in column.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _nested_names(table: Table, limit: int = 40) -> list[str]:
    """Column names with one level of nested keys (``reward_model.ground_truth``), for error messages."""
    out: list[str] = []
    for col in table.columns:
        out.append(col)
        sample = next((r.get(col) for _, r in table.rows if isinstance(r.get(col), dict)), None)
        if isinstance(sample, dict):
            out += [f"{col}.{k}" for k in sample]
    return out[:limit]


def column_map(s: TaskSection, tables: Sequence[Table], domain: str) -> dict[str, str]:
    """Our name -> the data's column, checked against every table (a missing column lists the columns)."""
    unknown = [k for k in s.fields if k not in OUR_FIELDS]
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], OUR_FIELDS, n=1)
        raise ConfigError(f"task.fields.{unknown[0]}: not one of our names ({', '.join(OUR_FIELDS)})"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""))
    mapping: dict[str, str] = {}
    for ours in OUR_FIELDS:
        if ours in s.fields:
            mapping[ours] = s.fields[ours]
            continue
        for candidate in COMMON_COLUMNS[ours]:  # unmapped: the first common column name the data has
            if all(any(lookup(r, candidate) is not _MISSING for _, r in t.rows) for t in tables if t.rows):
                mapping[ours] = candidate
                break
    if any(mapping.get(k) != s.fields.get(k) for k in mapping):
        logger.info("task dataset: columns %s (unmapped names took the common column names; set task.fields to choose)",
                    ", ".join(f"{k}={v}" for k, v in mapping.items()))
    needed = ["problem"] + (["tests"] if domain == "code" else [])
    for ours in needed:
        if ours not in mapping:
            t = tables[0]
            raise DataError(f"{t.source}: no {ours!r} column; map it with task.fields.{ours}=<column>. The data's columns: "
                            f"{', '.join(_nested_names(t))}")
    if domain == "math" and "answer" not in mapping and "solution" not in mapping:
        t = tables[0]
        raise DataError(f"{t.source}: no reference column; map task.fields.answer (a bare answer) or task.fields.solution "
                        f"(a worked solution with a final \\boxed{{}}). The data's columns: {', '.join(_nested_names(t))}")
    for t in tables:
        for ours, col in mapping.items():
            if t.rows and not any(lookup(r, col) is not _MISSING for _, r in t.rows):
                raise DataError(f"{t.source}: task.fields.{ours} = {col!r}: no such column. The data's columns: "
                                f"{', '.join(_nested_names(t))}")
    return mapping


class BadRow(ValueError):
    """A row that is skipped: no problem, no reference, tests that do not parse."""


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _text(value: Any, what: str) -> str:
    if value is _MISSING or value is None or _is_nan(value):
        raise BadRow(f"no {what}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRow(f"{what} is a {type(value).__name__}, not text")
    if not value.strip():
        raise BadRow(f"{what} is empty")
    return value


def _problem_value(value: Any) -> tuple[str, tuple[dict[str, str], ...] | None]:
    """(the problem text, the chat messages or None): a string, or a list of {role, content} messages."""
    if isinstance(value, str) and value.strip().startswith("[") and '"role"' in value:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
            raise BadRow("problem is a list but not of chat messages ({role, content})")
        messages = tuple({"role": str(m.get("role") or "user"), "content": m["content"]} for m in value)
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users or not users[-1].strip():
            raise BadRow("problem messages have no user message with text")
        return users[-1], messages
    return _text(value, "problem"), None


def last_boxed_reference(solution: str) -> str:
    from verifiers.math.extract import last_boxed

    ans = last_boxed(solution)
    if ans is None or not ans.strip():
        raise BadRow("solution has no \\boxed{} answer (map task.fields.answer to a bare answer column instead)")
    return ans


def math_reference(answer: Any, solution: Any) -> tuple[str, str]:
    """(reference, reference_format) from the answer column, else the solution's last ``\\boxed{}``."""
    if answer is not _MISSING and answer is not None and not _is_nan(answer):
        if isinstance(answer, (list, tuple)) and len(answer) == 1:
            answer = answer[0]
        text = _text(answer, "answer")
        if "####" in text:  # a GSM8K-style worked answer ending in "#### 72"
            if not text.rpartition("####")[2].strip():
                raise BadRow("answer has '####' but nothing after it")
            return text, "gsm8k"
        if "\\boxed" in text or "\\fbox" in text:
            return last_boxed_reference(text), "answer"
        return text, "answer"
    if solution is _MISSING:
        raise BadRow("no answer")
    if solution is None:
        raise BadRow("no reference (answer or solution)")
    return last_boxed_reference(_text(solution, "solution")), "answer"


def _decode(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadRow(f"{what} is a string that is not JSON ({exc.msg} at char {exc.pos})") from None
    return value


def guess_tests_format(value: Any) -> str:
    """``task.tests_format: null``: ``asserts`` for assert lines, ``call`` for cases with an ``fn_name``, else ``stdio``."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("assert"):
            return "asserts"
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return "asserts"
    if isinstance(value, (list, tuple)) or (isinstance(value, dict) and ("test_list" in value or "asserts" in value)):
        return "asserts"
    if isinstance(value, dict) and value.get("fn_name"):
        return "call"
    return "stdio"


def _io_text(value: Any) -> str:
    if isinstance(value, list):  # lines
        return "\n".join(map(str, value)) + "\n"
    return value if isinstance(value, str) else json.dumps(value)


def code_tests(value: Any, fmt: str, entry_point: str | None) -> dict[str, Any]:
    """A ``verifiers.code`` test spec from the tests column in ``task.tests_format``; ``BadRow`` when it
    does not parse."""
    if value is _MISSING or value is None:
        raise BadRow("no tests")
    if fmt == "asserts":
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                value = _decode(value, "tests")
            else:
                value = [line for line in stripped.splitlines() if line.strip()]
        setup = ""
        if isinstance(value, dict):
            setup = value.get("setup") or value.get("test_setup_code") or ""
            value = value.get("test_list") or value.get("asserts")
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(t, str) and t.strip() for t in value):
            raise BadRow("asserts tests must be a non-empty list of assert lines")
        spec: dict[str, Any] = {"style": "assert", "test_list": list(value), "setup": setup}
    else:
        io = _decode(value, "tests")
        if not isinstance(io, dict):
            raise BadRow(f"{fmt} tests must be an object with inputs and outputs, got {type(io).__name__}")
        inputs, outputs = io.get("inputs", io.get("input")), io.get("outputs", io.get("output"))
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise BadRow(f"{fmt} tests need 'inputs' and 'outputs' lists")
        if fmt == "stdio":
            spec = {"style": "stdio", "inputs": [_io_text(x) for x in inputs], "outputs": [_io_text(x) for x in outputs]}
        else:
            fn = io.get("fn_name") or entry_point
            if not fn:
                raise BadRow("call tests need 'fn_name' (or map task.fields.entry_point)")
            spec = {"style": "call", "fn_name": fn, "inputs": inputs, "outputs": outputs}
    try:  # the code verifier's own checks, so a row that loads is a row it takes
        _code_checker().parse_item({"id": "check", "response": "", "tests": spec})
    except InputError as exc:
        raise BadRow(f"tests do not parse: {str(exc).removeprefix(': ')}") from None
    return spec


_CHECKER: Any = None


def _code_checker() -> Any:
    """A code verifier used only for its ``parse_item`` (it starts no sandbox until asked to verify)."""
    global _CHECKER
    if _CHECKER is None:
        from verifiers.code import CodeVerifier

        _CHECKER = CodeVerifier()
    return _CHECKER


def _level(value: Any) -> Any:
    if value is _MISSING or value is None or _is_nan(value):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else (text or None)


def json_safe(value: Any) -> Any:
    """Plain JSON data (numpy arrays, tuples, dates become lists and strings)."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


@dataclass
class Prepared:
    problems: list[Problem]
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # (where, id, reason)
    total: int = 0


def _row_id(mapping: dict[str, str], row: dict[str, Any], split: str, index: int) -> str:
    if "id" in mapping:
        value = lookup(row, mapping["id"])
        if value is not _MISSING and value is not None and str(value).strip():
            return str(value)
    return f"{split}/{index}"


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def prepare(table: Table, split: str, s: TaskSection, domain: str, mapping: dict[str, str], extraction: str) -> Prepared:
    """Problems of one table; bad rows are collected with their reason, never raised."""
    out = Prepared([], [], len(table.rows))
    for index, (where, row) in enumerate(table.rows):
        pid = _row_id(mapping, row, split, index)
        try:
            question, messages = _problem_value(lookup(row, mapping["problem"]))
            if s.prompt_template is not None:
                try:
                    question = s.prompt_template.format_map(_FormatRow(row))
                except (KeyError, IndexError, AttributeError, ValueError) as exc:
                    raise DataError(f"{where}: task.prompt_template {s.prompt_template!r} cannot be filled from this row "
                                    f"({type(exc).__name__}: {exc}); the row's columns: {', '.join(row)}") from None
                messages = None
            level = _level(lookup(row, mapping["level"])) if "level" in mapping else None
            solution = lookup(row, mapping["solution"]) if "solution" in mapping else _MISSING
            solution_text = solution if isinstance(solution, str) and solution.strip() else None
            columns = json_safe(row)
            if domain == "math":
                reference, ref_format = math_reference(lookup(row, mapping["answer"]) if "answer" in mapping else _MISSING,
                                                       solution)
                out.problems.append(Problem(pid, question, {"reference": reference, "reference_format": ref_format},
                                            level, solution_text, columns=columns, messages=messages))
            else:
                entry = lookup(row, mapping["entry_point"]) if "entry_point" in mapping else None
                entry = entry if isinstance(entry, str) and entry.strip() else None
                raw_tests = lookup(row, mapping["tests"])
                tests = code_tests(raw_tests, s.tests_format or guess_tests_format(raw_tests), entry)
                starter = lookup(row, mapping["starter_code"]) if "starter_code" in mapping else None
                if solution_text is not None:
                    solution_text = solution_text.replace("\r\n", "\n")
                out.problems.append(CodeProblem(pid, question, {"tests": tests}, level, solution_text, columns=columns,
                                                messages=messages, extraction=extraction,
                                                starter_code=starter if isinstance(starter, str) else "",
                                                entry_point=entry or tests.get("fn_name") or ""))
        except BadRow as exc:
            out.bad.append((where, pid, str(exc)))
    return out


class _FormatRow(dict):
    """``str.format_map`` over a row: ``{question}``, ``{reward_model[ground_truth]}``; a missing key names the columns."""

    def __missing__(self, key: str) -> Any:
        raise KeyError(f"no column {key!r}")


def check_duplicates(prepared: Sequence[tuple[Table, Prepared]]) -> None:
    seen: dict[str, str] = {}
    wheres = {id(p): where for table, prep in prepared for p, (where, _) in zip(prep.problems, _good_rows(table, prep))}
    for _, prep in prepared:
        for p in prep.problems:
            where = wheres[id(p)]
            if p.problem_id in seen:
                raise DataError(f"duplicate id {p.problem_id!r}: {seen[p.problem_id]} and {where} (map task.fields.id to a "
                                "unique column, or leave it unmapped to number the rows)")
            seen[p.problem_id] = where


def _good_rows(table: Table, prep: Prepared) -> list[tuple[str, dict[str, Any]]]:
    bad = {w for w, _, _ in prep.bad}
    return [(w, r) for w, r in table.rows if w not in bad]


def check_bad_rows(prepared: Sequence[tuple[Table, Prepared]], max_fraction: float) -> dict[str, Any]:
    """Stop (``DataError``) above ``max_fraction`` bad rows, else warn once naming them; returns data.json's content."""
    bad = [b for _, prep in prepared for b in prep.bad]
    total = sum(prep.total for _, prep in prepared)
    reasons = Counter(_reason_key(r) for _, _, r in bad)
    info = {"rows": total, "skipped": len(bad), "skipped_by_reason": dict(reasons),
            "skipped_ids": [pid for _, pid, _ in bad], "sources": [t.source for t, _ in prepared]}
    if not bad:
        return info
    share = len(bad) / max(total, 1)
    if share > max_fraction:
        first = "\n".join(f"  {where} (id {pid}): {reason}" for where, pid, reason in bad[:5])
        raise DataError(f"{len(bad)} of {total} rows ({100 * share:.1f}%) are bad, above task.max_bad_fraction="
                        f"{max_fraction}; nothing was sampled. The first {min(5, len(bad))}:\n{first}\nFix the data or the "
                        "task.fields mapping (or raise task.max_bad_fraction to skip them)")
    ids = ", ".join(pid for _, pid, _ in bad[:_SHOW_IDS]) + (f" and {len(bad) - _SHOW_IDS} more" if len(bad) > _SHOW_IDS else "")
    logger.warning("skipped %d bad rows of %d (%s): ids %s", len(bad), total,
                   ", ".join(f"{k} {v}" for k, v in reasons.items()), ids)
    return info


def _reason_key(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0]


# --------------------------------------------------------------------------- prompts


def chat_user(problem: Problem, instruction: str, templated: bool) -> str:
    if templated:
        return problem.question
    parts = [problem.question]
    if isinstance(problem, CodeProblem):
        tests = problem.tests
        if tests.get("style") == "assert":
            parts.append("Your code should pass these tests:\n\n```python\n" + "\n".join(tests["test_list"]) + "\n```")
        if problem.starter_code.strip():
            parts.append("Start from this code:\n\n```python\n" + problem.starter_code.rstrip() + "\n```")
        elif tests.get("style") == "call" or problem.entry_point:
            name = tests.get("fn_name") or problem.entry_point
            if name:
                parts.append(f"The function is named `{name}`.")
    if isinstance(problem, CodeProblem):  # the instruction fits the problem's tests
        instruction = CODE_INSTRUCTIONS[{"assert": "asserts", "call": "call"}.get(problem.tests.get("style"), "stdio")]
    if instruction:
        parts.append(instruction)
    return "\n\n".join(parts)


def _solution_text(problem: Problem) -> str:
    sol = (problem.solution or "").strip()
    if isinstance(problem, CodeProblem) and not sol.startswith("```"):
        return f"```python\n{sol}\n```"
    return sol


def make_prompt(instruction: str, templated: bool, code: bool) -> TaskPrompt:
    def user(problem: Problem) -> str:
        return chat_user(problem, instruction, templated)

    def text(problem: Problem, fewshot: Sequence[Problem]) -> str:
        shots = "".join(f"Problem:\n{user(ex)}\n\nSolution:\n{_solution_text(ex)}\n\n" for ex in fewshot if ex.solution)
        return f"{shots}Problem:\n{user(problem)}\n\nSolution:\n"

    def messages(problem: Problem) -> list[dict[str, str]]:
        if problem.messages is None or templated:
            return [{"role": "user", "content": user(problem)}]
        return [dict(m) for m in problem.messages]

    return TaskPrompt(chat_user=user, text=text, stop=("\n\nProblem:", "\nProblem:"),
                      chat_stop=CHAT_STOP if code else (), chat_messages=messages)


# --------------------------------------------------------------------------- the task


def _tables(s: TaskSection) -> tuple[Table | None, Table | None]:
    """(train, test) tables from the paths or the hub; test None means carve it with task.test_fraction."""
    if s.hub_name:
        train = read_hub(s.hub_name, s.train_split) if s.num_train != 0 or s.test_split is None else None
        test = read_hub(s.hub_name, s.test_split) if s.test_split else None
        return train, test
    if s.train_path is None and s.test_path is None:
        raise ConfigError("task dataset: set task.train_path and/or task.test_path (a .jsonl, .json, .parquet or .csv file, or "
                          "a datasets.save_to_disk folder), or task.hub_name")
    train = read_table(s.train_path, s.train_split) if s.train_path else None
    test = read_table(s.test_path, s.test_split or "test") if s.test_path else None
    return train, test


def _carve(problems: list[Problem], fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"task.test_fraction must be between 0 and 1, got {fraction}")
    n_test = max(1, round(len(problems) * fraction))
    held = set(random.Random(f"{seed}:test_fraction").sample(range(len(problems)), min(n_test, len(problems))))
    return [p for i, p in enumerate(problems) if i not in held], [p for i, p in enumerate(problems) if i in held]


def infer_domain(s: TaskSection) -> str:
    if s.domain is not None:
        return s.domain
    return "code" if ("tests" in s.fields or s.tests_format is not None) else "math"


def build(s: TaskSection) -> Task:
    """The ``dataset`` task of ``s`` (``rest_em.tasks`` registers it as ``dataset``)."""
    domain = infer_domain(s)
    if s.tests_format is not None and domain != "code":
        raise ConfigError("task.tests_format applies to task.domain code")
    if not 0.0 <= s.max_bad_fraction <= 1.0:
        raise ConfigError(f"task.max_bad_fraction must be between 0 and 1, got {s.max_bad_fraction}")
    extraction = check_extraction(s.extraction or DEFAULT_EXTRACTION) if domain == "code" else DEFAULT_EXTRACTION
    if s.prompt_template is not None:
        try:
            _template_fields(s.prompt_template)
        except ValueError as exc:
            raise ConfigError(f"task.prompt_template {s.prompt_template!r} is not a format string: {exc} (write literal "
                              "braces as {{ and }})") from None
    train_t, test_t = _tables(s)
    tables = [t for t in (train_t, test_t) if t is not None]
    mapping = column_map(s, tables, domain)
    prepared = [(t, prepare(t, split, s, domain, mapping, extraction))
                for t, split in ((train_t, "train"), (test_t, "test")) if t is not None]
    info = check_bad_rows(prepared, s.max_bad_fraction)
    check_duplicates(prepared)
    train_pool = prepared[0][1].problems if train_t is not None else []
    if test_t is not None:
        if s.test_fraction is not None:
            logger.warning("task.test_fraction is ignored: the test split comes from %s", test_t.source)
        test_pool = prepared[-1][1].problems
    elif s.test_fraction is not None:
        train_pool, test_pool = _carve(train_pool, s.test_fraction, s.seed)
    else:
        raise ConfigError("task dataset: no test split; set task.test_path (or task.test_split with task.hub_name), or "
                          "task.test_fraction to hold out a seeded share of the train rows")
    test = select(test_pool, s.num_test, s.seed, s.levels)
    fewshot = _fewshot(train_pool, s.num_fewshot, s.seed) if s.num_train != 0 or s.num_fewshot else []
    held = {p.problem_id for p in fewshot}
    train = select([p for p in train_pool if p.problem_id not in held], s.num_train, s.seed, s.levels) if s.num_train != 0 else []
    if not test:
        raise DataError(f"task dataset: the test split is empty after selection (levels {s.levels})")
    if s.num_train != 0 and not train:
        raise DataError(f"task dataset: the train split is empty after selection (levels {s.levels})")
    instruction = "" if s.prompt_template is not None else (
        MATH_INSTRUCTION if domain == "math" else CODE_INSTRUCTIONS[s.tests_format or "stdio"])
    prompt = make_prompt(instruction, s.prompt_template is not None, domain == "code")
    info.update(train=len(train), test=len(test), fewshot=len(fewshot), domain=domain, fields=mapping)
    logger.info("task dataset (%s): %d train, %d test problems from %s", domain, len(train), len(test),
                ", ".join(t.source for t in tables))
    cls = CodeTask if domain == "code" else Task
    task = cls("dataset", domain, train, test, instruction, fewshot, prompt=prompt)
    task.data_info = info
    return task


def _fewshot(pool: Sequence[Problem], num: int, seed: int, max_chars: int = 1200) -> list[Problem]:
    short = sorted((p for p in pool if p.solution and len(p.solution) + len(p.question) <= max_chars), key=lambda p: p.problem_id)
    return random.Random(seed).sample(short, min(num, len(short)))
