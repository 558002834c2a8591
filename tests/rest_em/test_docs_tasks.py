"""docs/tasks.md's three worked examples, run as written, on the shared data rewritten into their schemas."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from rest_em.config import load_config
from rest_em.tasks import load_task
from rest_em.verification import LazyVerifier, verify_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("REST_EM_DATA_DIR", ROOT.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "math" / "math500.jsonl").exists(), reason=f"no shared data at {DATA}")


def example(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME -->`` in docs/tasks.md."""
    text = (ROOT / "docs" / "tasks.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.S)
    assert m, f"docs/tasks.md has no example {name!r}"
    return m.group(1)


def config_from_doc(name: str, tmp_path: Path, extra: list[str] = ()):
    """The example's YAML with its data/ paths pointing at tmp_path."""
    text = example(f"{name} config").replace("data/", f"{tmp_path}/")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, list(extra))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_example_1_math_jsonl_with_bare_answers(tmp_path):
    shown = json.loads(example("math-jsonl rows"))
    rows = [json.loads(line) for line in (DATA / "math" / "math500.jsonl").read_text().splitlines()[:40]]
    mine = [{"qid": r["unique_id"], "question": r["problem"], "final": r["answer"], "difficulty": f"Level {r['level']}"} for r in rows]
    assert list(mine[0]) == list(shown)  # the schema the page shows
    _write_jsonl(tmp_path / "math_train.jsonl", mine[:20])
    _write_jsonl(tmp_path / "math_test.jsonl", mine[20:])
    task = load_task(config_from_doc("math-jsonl", tmp_path).task)
    assert len(task.train) == 16 and len(task.test) == 16
    assert {p.payload["reference_format"] for p in task.test} == {"answer"}
    assert {p.level for p in task.test} <= {f"Level {n}" for n in range(1, 6)}
    # The parquet twin loads the same problems.
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, rs in (("train", mine[:20]), ("test", mine[20:])):
        pq.write_table(pa.Table.from_pylist(rs), tmp_path / f"math_{split}.parquet")
    twin = load_task(config_from_doc("math-jsonl", tmp_path, ["task.train_path=" + str(tmp_path / "math_train.parquet"),
                                                               "task.test_path=" + str(tmp_path / "math_test.parquet")]).task)
    assert [(p.problem_id, p.payload) for p in twin.test] == [(p.problem_id, p.payload) for p in task.test]


@pytest.mark.docker
def test_example_2_mbpp_like_parquet_with_assert_tests(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shown = json.loads(example("mbpp-parquet rows"))
    rows = [json.loads(line) for line in (DATA / "mbpp" / "mbpp.jsonl").read_text().splitlines()[10:30]]
    mine = [{"task": f"mb{r['task_id']}", "prompt": r["text"], "tests": json.dumps(r["test_list"]), "reference_code": r["code"]}
            for r in rows]
    assert list(mine[0]) == list(shown)
    pq.write_table(pa.Table.from_pylist(mine), tmp_path / "mbpp.parquet")
    cfg = config_from_doc("mbpp-parquet", tmp_path, ["verifier.workers=1"])
    task = load_task(cfg.task)
    assert task.domain == "code" and len(task.test) == 5
    lazy = LazyVerifier(cfg.verifier, task.domain)
    try:
        problems = {p.problem_id: p for p in task.test}
        samples = [{"problem_id": p.problem_id, "sample_idx": 0, "text": f"```python\n{p.solution}\n```"} for p in task.test]
        samples += [{"problem_id": p.problem_id, "sample_idx": 1, "text": "```python\ndef nothing():\n    pass\n```"} for p in task.test]
        verdicts = verify_rows(lazy.get(), problems, samples, where="doc example 2")
    finally:
        lazy.close()
    assert [v["verdict"] for v in verdicts] == ["pass"] * 5 + ["fail"] * 5


def test_example_3_custom_verifier_as_verl_compute_score(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "my_reward.py").write_text(example("verl-reward module"))
    gsm = [json.loads(line) for line in (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:20]]
    rows = [{"data_source": "gsm8k", "prompt": [{"role": "user", "content": r["question"]}],
             "reward_model": {"style": "rule", "ground_truth": r["answer"].split("####")[-1].strip().replace(",", "")},
             "extra_info": {"index": i}} for i, r in enumerate(gsm)]
    pq.write_table(pa.Table.from_pylist(rows[:10]), tmp_path / "verl_train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[10:]), tmp_path / "verl_test.parquet")
    cfg = config_from_doc("verl-reward", tmp_path, ["verifier.workers=1"])
    assert yaml.safe_load(example("verl-reward config"))["verifier"]["custom"].endswith(":compute_score")
    task = load_task(cfg.task)
    assert {p.level for p in task.test} == {"gsm8k"}
    lazy = LazyVerifier(cfg.verifier, task.domain, cfg.verifier.custom)
    try:
        v = lazy.get()
        assert v.convention == "verl"
        problems = {p.problem_id: p for p in task.test}
        samples = [{"problem_id": p.problem_id, "sample_idx": 0, "text": f"So the total is {p.payload['reference']}."} for p in task.test]
        samples += [{"problem_id": p.problem_id, "sample_idx": 1, "text": "I cannot tell."} for p in task.test]
        verdicts = verify_rows(v, problems, samples, where="doc example 3")
    finally:
        lazy.close()
    assert [x["verdict"] for x in verdicts] == ["pass"] * 10 + ["fail"] * 10
    assert verdicts[0]["answer"] == task.test[0].payload["reference"]
    assert {x["reason"] for x in verdicts[10:]} == {"no_answer"}
