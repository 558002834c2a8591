"""algorithm sft: one fine-tuning of the base model on the train problems' reference solutions, no E-step."""

from __future__ import annotations

import json
import types

import pytest
from test_algorithms import rows, setup  # noqa: F401  (the fake sampler, verifier and trainer of the loop tests)

from rest_em.config import ConfigError
from rest_em.loop import run
from rest_em.rundir import RunDir


def test_sft_trains_the_base_model_once_on_the_references_and_samples_no_train_problem(setup):  # noqa: F811
    cfg, task, state = setup("sft", lambda m, j, i: False, iterations=3)
    run(cfg)
    base = str(cfg.model_path())
    assert len(state["calls"]) == 1 and state["calls"][0]["init"] == base  # one step, from the base model
    ex = state["calls"][0]["examples"]
    by_id = {p.problem_id: p for p in task.train}
    assert sorted(e["problem_id"] for e in ex) == sorted(by_id) and {e["source"] for e in ex} == {"reference"}
    assert all(e["completion"] == by_id[e["problem_id"]].solution for e in ex)
    rd = RunDir(cfg.run_dir())
    assert rd.iterations() == [0, 1]  # iterations 2-3 are not run
    assert not (rd.iter_dir(1) / "samples.jsonl").exists()  # no E-step
    train_prompts = {task_p for p in task.train for task_p in [p.question]}
    assert not any(q in prompt for call in state["log"] for prompt in call["prompts"] for q in train_prompts)
    info = rd.info(1, "dataset")
    assert info["references"] == len(task.train) and "one step is the whole algorithm" in info["whole_algorithm"]
    report = (cfg.run_dir() / "report.md").read_text()
    assert "one step is the whole algorithm" in report and "reference 6" in report
    data = json.loads((cfg.run_dir() / "report.json").read_text())
    assert data["algorithm"] == "sft" and data["iterations"][1]["policy"] == "iter_01/checkpoint"
    assert data["iterations"][1]["compute"]["tokens_sampled_estep"] is None
    assert rows(rd.iter_dir(1) / "train_set.jsonl") == ex


def test_sft_resumes_without_training_again(setup):  # noqa: F811
    cfg, task, state = setup("sft", lambda m, j, i: False, iterations=1)
    run(cfg)
    run(cfg)
    assert len(state["calls"]) == 1


def test_sft_refuses_a_task_without_reference_solutions(setup):  # noqa: F811
    from rest_em.algorithms.sft import SFT

    cfg, task, _ = setup("sft", lambda m, j, i: True)
    algo = SFT(cfg, RunDir.open(cfg), cfg.model_path())
    no_refs = types.SimpleNamespace(train=types.SimpleNamespace(task=types.SimpleNamespace(name="humaneval"), problems=task.train))
    with pytest.raises(ConfigError, match="sft trains on reference solutions.*humaneval"):
        algo.check(no_refs)
    blank = [types.SimpleNamespace(solution=None) for _ in task.train]
    with pytest.raises(ConfigError, match="has none"):
        algo.check(types.SimpleNamespace(train=types.SimpleNamespace(task=task, problems=blank)))
