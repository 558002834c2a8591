"""Task `dataset`: the shared benchmark data, rewritten here into other schemas in a temporary folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from rest_em.config import ConfigError, load_config
from rest_em.prompts import PromptFormat
from rest_em.tasks import load_task
from rest_em.tasks.code_common import CodeProblem
from rest_em.tasks.dataset import DataError, lookup

DATA = Path(os.environ.get("REST_EM_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "math" / "math500.jsonl").exists(), reason=f"no shared data at {DATA}")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _math500(n: int = 100) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "math" / "math500.jsonl").read_text().splitlines()[:n]]
    # Another schema: renamed columns, the level as a string, the id under a name of its own.
    return [{"qid": r["unique_id"], "question": r["problem"], "final": r["answer"], "difficulty": f"Level {r['level']}",
             "worked": r["solution"]} for r in rows]


def task_of(*overrides: str):
    return load_task(load_config(None, ["task.name=dataset", *overrides]).task)


MATH_FIELDS = "task.fields={problem: question, answer: final, id: qid, level: difficulty}"


def test_math_jsonl_with_bare_answers(tmp_path):
    rows = _math500(60)
    _jsonl(tmp_path / "train.jsonl", rows[:40])
    _jsonl(tmp_path / "test.jsonl", rows[40:])
    t = task_of(f"task.train_path={tmp_path}/train.jsonl", f"task.test_path={tmp_path}/test.jsonl", MATH_FIELDS,
                "task.num_train=null", "task.num_test=null", "task.num_fewshot=0")
    assert t.domain == "math" and len(t.train) == 40 and len(t.test) == 20
    p = t.test[0]
    assert p.problem_id == rows[40]["qid"] and p.question == rows[40]["question"]
    assert p.payload == {"reference": rows[40]["final"], "reference_format": "answer"}
    assert p.level == rows[40]["difficulty"]  # a string level: the report has a row per value
    assert p.columns["difficulty"] == rows[40]["difficulty"]
    assert t.data_info["skipped"] == 0 and t.data_info["rows"] == 60


@pytest.mark.parametrize("kind", ["parquet", "csv", "json", "save_to_disk", "hub"])
def test_every_source_gives_the_same_problems(tmp_path, kind):
    rows = _math500(30)
    _jsonl(tmp_path / "train.jsonl", rows[:20])
    _jsonl(tmp_path / "test.jsonl", rows[20:])
    base = ["task.num_train=null", "task.num_test=null", "task.num_fewshot=0", MATH_FIELDS]
    want = task_of(f"task.train_path={tmp_path}/train.jsonl", f"task.test_path={tmp_path}/test.jsonl", *base)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for split, rs in (("train", rows[:20]), ("test", rows[20:])):
            pq.write_table(pa.Table.from_pylist(rs), tmp_path / f"{split}.parquet")
        got = task_of(f"task.train_path={tmp_path}/train.parquet", f"task.test_path={tmp_path}/test.parquet", *base)
    elif kind == "csv":
        import csv

        for split, rs in (("train", rows[:20]), ("test", rows[20:])):
            with (tmp_path / f"{split}.csv").open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rs[0]))
                w.writeheader()
                w.writerows(rs)
        got = task_of(f"task.train_path={tmp_path}/train.csv", f"task.test_path={tmp_path}/test.csv", *base)
    elif kind == "json":
        (tmp_path / "train.json").write_text(json.dumps(rows[:20]))
        (tmp_path / "test.json").write_text(json.dumps({"data": rows[20:]}))
        got = task_of(f"task.train_path={tmp_path}/train.json", f"task.test_path={tmp_path}/test.json", *base)
    elif kind == "save_to_disk":
        import datasets

        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:20]),
                              "validation": datasets.Dataset.from_list(rows[20:])}).save_to_disk(str(tmp_path / "dd"))
        got = task_of(f"task.train_path={tmp_path}/dd", f"task.test_path={tmp_path}/dd", "task.test_split=validation", *base)
    else:  # task.hub_name through datasets.load_dataset; a local dataset folder stands in for the hub here
        got = task_of(f"task.hub_name={tmp_path}", "task.train_split=train", "task.test_split=test", *base)
    assert [(p.problem_id, p.question, p.payload, p.level) for p in got.train + got.test] == \
           [(p.problem_id, p.question, p.payload, p.level) for p in want.train + want.test]


def test_hub_that_cannot_load_says_what_to_do():
    with pytest.raises(DataError, match="could not load split 'train'.*train_path"):
        task_of("task.hub_name=/nonexistent/dataset-xyz", "task.fields={problem: q, answer: a}")


def test_test_fraction_is_a_seeded_split(tmp_path):
    _jsonl(tmp_path / "all.jsonl", _math500(50))
    args = [f"task.train_path={tmp_path}/all.jsonl", "task.test_fraction=0.2", MATH_FIELDS, "task.num_train=null",
            "task.num_test=null", "task.num_fewshot=0"]
    a, b, c = task_of(*args), task_of(*args), task_of(*args, "task.seed=1")
    assert len(a.test) == 10 and len(a.train) == 40
    assert [p.problem_id for p in a.test] == [p.problem_id for p in b.test] != [p.problem_id for p in c.test]
    assert not {p.problem_id for p in a.test} & {p.problem_id for p in a.train}
    with pytest.raises(ConfigError, match="test_fraction"):
        task_of(f"task.train_path={tmp_path}/all.jsonl", MATH_FIELDS)


def test_solution_column_gives_the_last_boxed_answer(tmp_path):
    rows = [{"problem": r["question"], "solution": r["worked"]} for r in _math500(20)]
    _jsonl(tmp_path / "a.jsonl", rows)
    t = task_of(f"task.train_path={tmp_path}/a.jsonl", "task.test_fraction=0.5", "task.num_fewshot=2")
    want = {r["question"]: r for r in _math500(20)}
    for p in t.train + t.test:
        assert p.payload["reference"] == want[p.question]["final"] and p.solution
    assert len(t.fewshot) == 2 and not {p.problem_id for p in t.fewshot} & {p.problem_id for p in t.train}


def test_verl_parquet_dotted_fields_and_chat_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    gsm = [json.loads(line) for line in (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:12]]
    rows = [{"data_source": "openai/gsm8k",
             "prompt": [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": r["question"]}],
             "reward_model": {"style": "rule", "ground_truth": r["answer"].split("####")[-1].strip()},
             "extra_info": {"index": i}} for i, r in enumerate(gsm)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "verl.parquet")
    t = task_of(f"task.train_path={tmp_path}/verl.parquet", "task.test_fraction=0.25", "task.num_fewshot=0",
                "task.fields={problem: prompt, answer: reward_model.ground_truth, id: extra_info.index}")
    p = next(p for p in t.test + t.train if p.problem_id == "0")
    assert p.payload["reference"] == gsm[0]["answer"].split("####")[-1].strip()
    assert p.question == gsm[0]["question"] and p.messages[0] == {"role": "system", "content": "Think step by step."}
    fmt = PromptFormat("chat", t.instruction, [], lambda msgs: json.dumps(msgs), t.prompt)
    assert json.loads(fmt.render(p)) == rows[0]["prompt"]  # the messages as they are, system message included
    row = p.custom_row("so 72", 3)
    assert row["problem"]["data_source"] == "openai/gsm8k" and row["problem"]["columns"]["extra_info"] == {"index": 0}
    assert lookup(rows[0], "reward_model.ground_truth") == rows[0]["reward_model"]["ground_truth"]


def test_prompt_template_over_the_row(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _math500(10))
    t = task_of(f"task.train_path={tmp_path}/a.jsonl", "task.test_fraction=0.5", MATH_FIELDS, "task.num_fewshot=0",
                "task.prompt_template='Q ({difficulty}): {question}\\nPut the final answer in \\boxed{{}}.'")
    p = t.test[0]
    assert p.question.startswith(f"Q ({p.columns['difficulty']}): ") and p.question.endswith("\\boxed{}.")
    assert t.prompt.chat_user(p) == p.question  # the template is the whole user message
    with pytest.raises(DataError, match="no column 'nope'.*question"):
        task_of(f"task.train_path={tmp_path}/a.jsonl", "task.test_fraction=0.5", MATH_FIELDS, "task.prompt_template='{nope}'")


def _mbpp_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in (DATA / "mbpp" / "mbpp.jsonl").read_text().splitlines()[10: 10 + n]]


def test_mbpp_like_parquet_with_assert_tests_as_json_strings(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"task": f"mb{r['task_id']}", "prompt": r["text"], "tests": json.dumps(r["test_list"]), "reference_code": r["code"]}
            for r in _mbpp_rows(20)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mbpp.parquet")
    t = task_of("task.domain=code", f"task.train_path={tmp_path}/mbpp.parquet", "task.test_fraction=0.25", "task.tests_format=asserts",
                "task.fields={id: task, problem: prompt, tests: tests, solution: reference_code}", "task.num_fewshot=0")
    assert t.domain == "code" and len(t.test) == 5
    p = t.test[0]
    assert isinstance(p, CodeProblem) and p.tests["style"] == "assert" and p.tests["test_list"][0].startswith("assert")
    assert "Your code should pass these tests" in t.prompt.chat_user(p)
    assert p.verifier_row("```python\ndef f(): pass\n```")["response"].strip() == "def f(): pass"


def test_apps_stdio_and_call_tests(tmp_path):
    apps = [json.loads(line) for line in (DATA / "apps" / "apps_10.jsonl").read_text().splitlines()]
    rows = [{"id": r["problem_id"], "q": r["question"], "io": r["input_output"], "difficulty": r["difficulty"]} for r in apps]
    _jsonl(tmp_path / "apps.jsonl", rows)
    t = task_of("task.domain=code", f"task.train_path={tmp_path}/apps.jsonl", "task.test_fraction=0.3", "task.tests_format=stdio",
                "task.fields={problem: q, tests: io, level: difficulty}", "task.num_fewshot=0", "task.levels=null")
    assert all(p.tests["style"] == "stdio" and p.tests["inputs"] for p in t.train + t.test)
    assert {p.level for p in t.train + t.test} <= {"introductory", "interview", "competition"}
    humaneval = [json.loads(line) for line in (DATA / "humaneval" / "HumanEval.jsonl").read_text().splitlines()[:6]]
    call_rows = [{"name": r["task_id"], "text": r["prompt"], "entry": r["entry_point"],
                  "cases": {"inputs": [[1, 2]], "outputs": [3]}} for r in humaneval]
    _jsonl(tmp_path / "call.jsonl", call_rows)
    t = task_of("task.domain=code", f"task.train_path={tmp_path}/call.jsonl", "task.test_fraction=0.5", "task.tests_format=call",
                "task.fields={id: name, problem: text, tests: cases, entry_point: entry, starter_code: text}", "task.num_fewshot=0")
    p = t.test[0]
    assert p.tests == {"style": "call", "fn_name": p.entry_point, "inputs": [[1, 2]], "outputs": [3]}
    assert "Start from this code" in t.prompt.chat_user(p)


def _bad_file(tmp_path: Path, bad: int) -> Path:
    rows = _math500(100)
    for i in range(bad):
        j = 2 * i
        if i % 3 == 0:
            rows[j]["final"] = None
        elif i % 3 == 1:
            rows[j]["question"] = ""
        else:
            del rows[j]["final"]
    return _jsonl(tmp_path / f"bad{bad}.jsonl", rows)


def test_three_bad_rows_are_skipped_counted_and_named(tmp_path, caplog):
    path = _bad_file(tmp_path, 3)
    rows = _math500(100)
    with caplog.at_level(logging.WARNING, logger="rest_em.tasks.dataset"):
        t = task_of(f"task.train_path={path}", "task.test_fraction=0.2", MATH_FIELDS, "task.num_train=null", "task.num_test=null")
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    for j in (0, 2, 4):
        assert rows[j]["qid"] in warnings[0]
    assert t.data_info["skipped"] == 3 and len(t.train) + len(t.test) + len(t.fewshot) == 97
    assert t.data_info["skipped_by_reason"] == {"no answer": 2, "problem is empty": 1}


def test_fifty_bad_rows_stop_before_sampling_naming_the_first_five(tmp_path):
    path = _bad_file(tmp_path, 50)
    with pytest.raises(DataError) as exc:
        task_of(f"task.train_path={path}", "task.test_fraction=0.2", MATH_FIELDS)
    text = str(exc.value)
    assert "50 of 100 rows (50.0%) are bad, above task.max_bad_fraction=0.05" in text
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(lines) == 5
    assert lines[0].startswith(f"  {path}:1 (id ") and lines[0].endswith("no answer")
    assert lines[1].endswith("problem is empty") and f"{path}:3 " in lines[1]
    # A higher threshold lets the same file run.
    assert task_of(f"task.train_path={path}", "task.test_fraction=0.2", MATH_FIELDS, "task.max_bad_fraction=0.6").data_info["skipped"] == 50


def test_bad_tests_are_skipped_with_a_reason(tmp_path):
    rows = [{"task": f"mb{r['task_id']}", "prompt": r["text"], "tests": r["test_list"]} for r in _mbpp_rows(30)]
    rows[3]["tests"] = "not json ["
    rows[5]["tests"] = ["assert f(1) ==="]  # not Python
    _jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match="tests do not parse: test_list\\[0\\] is not valid Python"):
        task_of("task.domain=code", f"task.train_path={tmp_path}/m.jsonl", "task.test_fraction=0.25", "task.tests_format=asserts",
                "task.fields={id: task, problem: prompt}")
    t = task_of("task.domain=code", f"task.train_path={tmp_path}/m.jsonl", "task.test_fraction=0.25", "task.tests_format=asserts",
                "task.fields={id: task, problem: prompt}", "task.max_bad_fraction=0.1")
    assert t.data_info["skipped_ids"] == [rows[3]["task"], rows[5]["task"]]


def test_duplicate_id_names_both_rows(tmp_path):
    rows = _math500(10)
    rows[7]["qid"] = rows[2]["qid"]
    _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=f"duplicate id '{rows[2]['qid']}': {tmp_path}/d.jsonl:3 and {tmp_path}/d.jsonl:8"):
        task_of(f"task.train_path={tmp_path}/d.jsonl", "task.test_fraction=0.2", MATH_FIELDS)


def test_missing_column_lists_the_columns(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _math500(5))
    with pytest.raises(DataError, match="task.fields.answer = 'answer_text': no such column. The data's columns: qid, question, "
                                        "final, difficulty, worked"):
        task_of(f"task.train_path={tmp_path}/a.jsonl", "task.test_fraction=0.2", "task.fields={problem: question, answer: answer_text}")
    _jsonl(tmp_path / "b.jsonl", [{"statement": r["question"], "final": r["final"]} for r in _math500(5)])
    with pytest.raises(DataError, match="no 'problem' column; map it with task.fields.problem=<column>. The data's columns: "
                                        "statement, final"):
        task_of(f"task.train_path={tmp_path}/b.jsonl", "task.test_fraction=0.2", "task.fields={answer: final}")
    with pytest.raises(ConfigError, match="did you mean 'answer'"):
        task_of(f"task.train_path={tmp_path}/a.jsonl", "task.test_fraction=0.2", "task.fields={problem: question, anwser: final}")


def test_skipped_rows_reach_data_json_and_the_report(tmp_path, tiny_model_dir):
    from rest_em.config import dump_config
    from rest_em.problem_sets import build_problem_sets
    from rest_em.report import collect, render_markdown

    path = _bad_file(tmp_path, 3)
    cfg = load_config(None, ["task.name=dataset", f"task.train_path={path}", "task.test_fraction=0.2", MATH_FIELDS,
                             f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path}/runs", "run.name=r"])
    sets = build_problem_sets(cfg, tiny_model_dir)
    sets.close()
    info = json.loads((cfg.run_dir() / "data.json").read_text())
    assert info["skipped"] == 3 and info["rows"] == 100
    (cfg.run_dir() / "config.yaml").write_text(dump_config(cfg))
    text = render_markdown(collect(cfg.run_dir()))
    assert "## Data" in text and "3 skipped as bad (no answer: 2, problem is empty: 1)" in text
    assert all(qid in text for qid in info["skipped_ids"])


def test_unmapped_names_take_common_column_names(tmp_path):
    # GSM8K as published (question, answer ending in "#### N") and MBPP as published (test_list), with no task.fields.
    gsm = [json.loads(line) for line in (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:10]]
    _jsonl(tmp_path / "gsm.jsonl", gsm)
    t = task_of(f"task.train_path={tmp_path}/gsm.jsonl", "task.test_fraction=0.5", "task.num_fewshot=0")
    p = next(p for p in t.train + t.test if p.problem_id == "train/0")
    assert p.question == gsm[0]["question"] and p.payload == {"reference": gsm[0]["answer"], "reference_format": "gsm8k"}
    mbpp = [{"task_id": r["task_id"], "prompt": r["text"], "test_list": r["test_list"]} for r in _mbpp_rows(8)]
    _jsonl(tmp_path / "mbpp.jsonl", mbpp)
    t = task_of("task.domain=code", f"task.train_path={tmp_path}/mbpp.jsonl", "task.test_fraction=0.5", "task.num_fewshot=0")
    p = next(p for p in t.train + t.test if p.problem_id == str(mbpp[0]["task_id"]))
    assert p.tests["style"] == "assert"  # tests_format guessed from the value
    assert "Write the Python function" in t.prompt.chat_user(p)
