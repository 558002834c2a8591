"""Tasks: the generated arithmetic task (seeded, levels, exact answers), MATH/GSM8K loaders on the real
data in ../shared/data, malformed rows reported with file and line, prompts."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from rest_em.config import TaskSection, TransferSection
from rest_em.prompts import PromptFormat, fewshot_text
from rest_em.tasks import TASKS, load_task, load_transfer
from rest_em.tasks.math_data import gsm8k_solution_text, load_split, parse_level
from verifiers.io import InputError

DATA = Path(os.environ.get("REST_EM_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "math" / "train.jsonl").exists(), reason=f"no shared data at {DATA}")


def test_arithmetic_is_deterministic_and_seeded():
    a = load_task(TaskSection(num_train=40, num_test=20, seed=3))
    b = load_task(TaskSection(num_train=40, num_test=20, seed=3))
    c = load_task(TaskSection(num_train=40, num_test=20, seed=4))
    assert a.train == b.train and a.test == b.test
    assert [p.question for p in a.train] != [p.question for p in c.train]
    # The test split does not depend on the train size.
    assert load_task(TaskSection(num_train=5, num_test=20, seed=3)).test == a.test


def test_arithmetic_splits_are_disjoint_and_ids_unique():
    t = load_task(TaskSection(num_train=300, num_test=100, num_fewshot=4, seed=0))
    questions = [p.question for p in (*t.train, *t.test, *t.fewshot)]
    assert len(questions) == len(set(questions)) == 404
    assert len({p.problem_id for p in (*t.train, *t.test)}) == 400
    assert t.domain == "math" and t.instruction.endswith("Give the final answer as \\boxed{N}.")


def _solve(question: str) -> int:
    """Independent check of the reference answers: evaluate the question's arithmetic."""
    nums = [int(n) for n in re.findall(r"\d+", question)]
    m = re.fullmatch(r"Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\.", question)
    if m:
        a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        return (c - (b if sign == "+" else -b)) // a
    if "gets" in question:
        return nums[0] + nums[1]
    if "gives away" in question:
        return nums[0] - nums[1]
    raise AssertionError(question)


def test_levels_and_exact_answers():
    t = load_task(TaskSection(num_train=200, num_test=0, levels=[1, 3], level_weights=[1, 1], seed=1))
    levels = Counter(p.level for p in t.train)
    assert set(levels) == {1, 3} and min(levels.values()) > 50
    for p in t.train:
        assert p.payload["reference_format"] == "answer"
        assert re.fullmatch(r"-?\d+", p.payload["reference"])
        assert p.solution.endswith(f"\\boxed{{{p.payload['reference']}}}.")
        if p.level == 3 or "gets" in p.question or "gives away" in p.question:
            assert _solve(p.question) == int(p.payload["reference"]), p.question


def test_level_weights_shape_the_mix():
    t = load_task(TaskSection(num_train=400, num_test=0, levels=[1, 2], level_weights=[3, 1], seed=0))
    share = Counter(p.level for p in t.train)[1] / 400
    assert 0.65 < share < 0.85
    with pytest.raises(ValueError, match="level_weights"):
        load_task(TaskSection(num_train=4, num_test=0, levels=[1, 2], level_weights=[1]))
    with pytest.raises(ValueError, match="levels"):
        load_task(TaskSection(num_train=4, num_test=0, levels=[9]))


def test_registry_has_the_tasks_and_rejects_unknown():
    assert {"arithmetic", "math", "gsm8k"} <= set(TASKS)
    with pytest.raises(ValueError, match="unknown task 'mathh'"):
        load_task(TaskSection(name="mathh"))


@needs_data
def test_math_loader_on_real_data():
    train = load_split("math", "train", str(DATA / "math" / "train.jsonl"), None)
    assert len(train) == 7500
    assert train[0].problem_id == "math/train/algebra/0.json"
    assert train[0].payload["reference_format"] == "math_solution" and "\\boxed" in train[0].payload["reference"]
    assert Counter(p.level for p in train)[None] == 2  # the two "Level ?" files
    m500 = load_split("math", "test", str(DATA / "math" / "math500.jsonl"), None)
    assert len(m500) == 500 and m500[0].payload["reference_format"] == "answer"
    assert {p.level for p in m500} == {1, 2, 3, 4, 5}


@needs_data
def test_math_task_subsets_levels_and_fewshot():
    s = TaskSection(name="math", train_path=str(DATA / "math" / "train.jsonl"), test_path=str(DATA / "math" / "math500.jsonl"),
                    num_train=50, num_test=30, levels=[1, 2], num_fewshot=4, seed=0)
    t = load_task(s)
    assert len(t.train) == 50 and len(t.test) == 30
    assert {p.level for p in (*t.train, *t.test)} <= {1, 2}
    assert len(t.fewshot) == 4 and not {p.problem_id for p in t.fewshot} & {p.problem_id for p in t.train}
    assert load_task(s).train == t.train


@needs_data
def test_gsm8k_transfer_set():
    s = TaskSection(transfer=TransferSection(name="gsm8k", path=str(DATA / "gsm8k" / "test.jsonl"), num_problems=25))
    t = load_transfer(s)
    assert len(t.test) == 25 and t.train == []
    assert t.test[0].payload["reference_format"] == "gsm8k" and "####" in t.test[0].payload["reference"]
    full = load_split("gsm8k", "test", str(DATA / "gsm8k" / "test.jsonl"), None)
    assert len(full) == 1319 and full[0].problem_id == "gsm8k/test/00000"
    assert load_transfer(TaskSection()) is None


def test_gsm8k_solution_text():
    assert gsm8k_solution_text("He has 2 + 3 = <<2+3=5>>5 apples.\n#### 5") == "He has 2 + 3 = 5 apples.\nThe final answer is \\boxed{5}."


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"problem": "1+1?", "level": "Level 1"}', "field 'solution' must be a non-empty string (missing)"),
        ('{"problem": 7, "solution": "\\\\boxed{2}"}', "field 'problem' must be a non-empty string (int"),
        ('{"problem": "x", "solution": "y", "level": "hard"}', "field 'level' must look like"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_math_row_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"problem": "1+1?", "solution": "\\boxed{2}", "level": "Level 1"})
    path.write_text(f"{good}\n\n{good}\n{line}\n")
    with pytest.raises(InputError) as exc:
        load_split("math", "test", str(path), None)
    assert f"{path}:4" in str(exc.value) and message in str(exc.value)


def test_malformed_gsm8k_row(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(InputError, match=r"g.jsonl:1: field 'answer' has no '####"):
        load_split("gsm8k", "test", str(path), None)


def test_parquet_files_are_read(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q1", "answer": "a #### 3"}, {"question": "", "answer": "#### 1"}]), path)
    with pytest.raises(InputError, match=r"t.parquet:row 2: field 'question'"):
        load_split("gsm8k", "test", str(path), None)


def test_parse_level():
    assert parse_level("Level 3", "w") == 3 and parse_level(5, "w") == 5 and parse_level("Level ?", "w") is None


def test_prompts_chat_and_fewshot(tiny_model_dir):
    from rest_em.prompts import make_prompt_format

    task = load_task(TaskSection(num_train=3, num_test=2, num_fewshot=2))
    chat = make_prompt_format(tiny_model_dir, "auto", task)
    assert chat.style == "chat" and chat.stop == ()
    prompt = chat.render(task.test[0])
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert f"{task.test[0].question}\n\nGive the final answer as \\boxed{{N}}." in prompt
    few = make_prompt_format(tiny_model_dir, "fewshot", task)
    text = few.render(task.test[0])
    assert text == fewshot_text(task.test[0], task.instruction, task.fewshot)
    assert text.count("Problem:\n") == 3 and text.endswith("Solution:\n")
    assert task.fewshot[0].solution in text and "\nProblem:" in few.stop
    assert isinstance(few, PromptFormat)
