"""A code E-step whose Docker engine is unreachable stops the run with the cause; with the engine back,
the same command completes, and every sample is verified exactly once in the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rest_em import training
from rest_em.config import load_config
from rest_em.loop import run
from rest_em.rundir import RunDir
from rest_em.sampling.params import Completion
from rest_em.tasks import load_task
from rest_em.verification import VerifierOutage

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.docker


class SolutionSampler:
    """Even samples answer with the problem's reference program, odd ones with a wrong one."""

    backend = "fake"

    def __init__(self, solutions):
        self.solutions = solutions

    def generate(self, prompts, params, desc=""):
        out = []
        for prompt in prompts:
            good = next(s for q, s in self.solutions.items() if q in prompt)
            out.append([Completion(good if i % 2 == 0 else "```python\nprint('no')\n```", "stop", 9)
                        for i in range(params.n)])
        return out

    def close(self):
        pass


def test_docker_outage_stops_the_run_and_the_rerun_completes(tmp_path, tiny_model_dir, sandbox_image, monkeypatch):
    cfg = load_config(REPO / "configs" / "code-default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path}", "run.name=c", "task.num_train=3",
        "task.num_test=2", "sampling.n=2", "eval.n=2", "eval.k_list=[1,2]", "iterations=1", "verifier.workers=1"])
    task = load_task(cfg.task)
    solutions = {p.question: p.solution for p in (*task.train, *task.test)}
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: SolutionSampler(solutions))

    def copy_train(base, examples, config, out):
        shutil.copytree(base, out)
        return training.TrainResult(out, 1, 0.5, 0.1, 100.0, len(examples))

    monkeypatch.setattr(training, "train", copy_train)
    cfg.iterations = 0
    run(cfg)  # the base model's evaluation, with the engine up
    # The engine "stops" before the E-step: the client points at a socket nobody listens on.
    cfg.iterations = 1
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(VerifierOutage, match=r"verdicts of iteration 1: 6 of 6 verdicts are errors.*Docker engine is not reachable"):
        run(cfg)
    rd = RunDir(cfg.run_dir())
    assert rd.done(1, "samples") and not rd.done(1, "verdicts") and not rd.done(1, "filter")
    monkeypatch.delenv("DOCKER_HOST")
    run(cfg)  # the engine is back: the same command finishes
    for path in ("iter_00/eval/verdicts.jsonl", "iter_01/verdicts.jsonl", "iter_01/eval/verdicts.jsonl"):
        rows = [json.loads(line) for line in (cfg.run_dir() / path).read_text().splitlines()]
        keys = [(r["problem_id"], r["sample_idx"], r.get("mode")) for r in rows]
        assert len(keys) == len(set(keys)) and not any(r["verdict"] == "error" for r in rows), path
        assert {r["verdict"] for r in rows if r["sample_idx"] % 2 == 0 and r.get("mode") != "greedy"} == {"pass"}
    assert rd.info(1, "verdicts")["counts"] == {"pass": 3, "fail": 3, "error": 0}
