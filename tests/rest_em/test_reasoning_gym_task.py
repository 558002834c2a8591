"""Task `reasoning_gym`: reasoning-gym's own generators and score_answer, through the custom-verifier hook."""

from __future__ import annotations

import pytest

pytest.importorskip("reasoning_gym")

from rest_em.config import ConfigError, load_config  # noqa: E402
from rest_em.tasks import load_task  # noqa: E402
from rest_em.tasks.reasoning_gym import SCORER, score  # noqa: E402
from rest_em.verification import LazyVerifier, verify_rows  # noqa: E402
from verifiers.custom import CustomVerifier  # noqa: E402

LEVELS = "task.rg.levels=[{min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1}, {min_terms: 3, max_terms: 3, min_digits: 2, max_digits: 2}]"


def rg_task(*overrides: str):
    return load_task(load_config(None, ["task.name=reasoning_gym", "task.rg.dataset=chain_sum", LEVELS, "task.num_train=20",
                                        "task.num_test=10", "task.num_fewshot=2", *overrides]).task)


def test_two_levels_seeded_disjoint_and_spread():
    a, b, c = rg_task(), rg_task(), rg_task("task.seed=5")
    assert [p.question for p in a.test] == [p.question for p in b.test] != [p.question for p in c.test]
    assert [p.level for p in a.test].count(1) == 5 and [p.level for p in a.test].count(2) == 5
    questions = [p.question for p in (*a.train, *a.test, *a.fewshot)]
    assert len(questions) == len(set(questions)) == 32
    # Level 2 has three two-digit terms, level 1 two one-digit terms: the configs reach the generator.
    for p in a.test:
        terms = p.columns["entry"]["metadata"]["num_terms"]
        assert terms == (2 if p.level == 1 else 3)
    # The test split does not move when the train size does.
    assert [p.question for p in rg_task("task.num_train=3").test] == [p.question for p in a.test]
    assert a.custom_verifier == SCORER and a.domain == "math"


def test_score_uses_the_datasets_own_score_answer():
    p = rg_task().test[0]
    ref = p.payload["reference"]
    row = p.custom_row(f"Adding up, we get \\boxed{{{ref}}}.")
    assert score(row["response"], row["reference"], row["problem"]) == {"score": 1.0, "answer": ref}
    row = p.custom_row(f"The answer is {int(ref) + 1}.")
    assert score(row["response"], row["reference"], row["problem"])["score"] < 1.0
    assert score("no idea", ref, row["problem"]) == {"score": 0.0, "reason": "no_answer"}
    assert score("\\boxed{1}", "1", {"columns": {}}) is None  # not a reasoning-gym problem: an error verdict


def test_verified_in_worker_processes_through_the_hook():
    task = rg_task()
    section = load_config(None, ["verifier.workers=1"]).verifier
    lazy = LazyVerifier(section, task.domain, task.custom_verifier)
    try:
        v = lazy.get()
        assert isinstance(v, CustomVerifier) and v.domain == "custom"
        problems = {p.problem_id: p for p in task.test}
        rows = [{"problem_id": p.problem_id, "sample_idx": 0, "text": f"so \\boxed{{{p.payload['reference']}}}"} for p in task.test]
        rows += [{"problem_id": p.problem_id, "sample_idx": 1, "text": "it is \\boxed{banana}"} for p in task.test]
        verdicts = verify_rows(v, problems, rows, where="test")
    finally:
        lazy.close()
    assert [r["verdict"] for r in verdicts] == ["pass"] * 10 + ["fail"] * 10
    assert verdicts[0]["answer"] == task.test[0].payload["reference"] and verdicts[10]["answer"] == "banana"


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'chain_sum'"):
        rg_task("task.rg.dataset=chain_summ")
    with pytest.raises(ConfigError, match="no config key 'max_term'; did you mean 'max_terms'"):
        rg_task("task.rg.levels=[{max_term: 2}]")
    with pytest.raises(ConfigError, match="set by rest-em"):
        rg_task("task.rg.levels=[{seed: 2}]")
    with pytest.raises(ConfigError, match="levels are 1..2"):
        rg_task("task.levels=[3]")
    assert {p.level for p in rg_task("task.levels=[2]").test} == {2}


def test_extraction_policies_choose_how_the_answer_is_read():
    p = rg_task().test[0]
    ref = p.payload["reference"]
    row = p.custom_row(f"so the sum is {ref}")
    assert score(row["response"], row["reference"], row["problem"])["reason"] == "no_answer"
    q = rg_task("task.rg.extraction_policies=[last_boxed, last_math]").test[0]
    row = q.custom_row(f"so the sum is {ref}")
    assert score(row["response"], row["reference"], row["problem"]) == {"score": 1.0, "answer": ref}
    with pytest.raises(ConfigError, match="task.rg.extraction_policies: unknown extraction policy 'boxed'"):
        rg_task("task.rg.extraction_policies=[boxed]")
