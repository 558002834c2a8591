"""A GRPO step on the code task: its rewards come from programs run in the Docker sandbox pool, in one
batch per step (needs Docker; marked like the other Docker tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rest_em.config import load_config
from verifiers.io import read_jsonl

pytestmark = pytest.mark.docker


def test_a_code_grpo_step_verifies_its_completions_in_the_sandbox(tmp_path, tiny_model_dir, sandbox_image, monkeypatch):
    from rest_em.algorithms import grpo
    from rest_em.online.rewards import VerifierReward
    from rest_em.problem_sets import build_problem_sets

    class ProgramsReward(VerifierReward):
        """The tiny model writes no code: every even completion of a group is the problem's reference program,
        so the step has passing and failing programs for the sandbox to run."""

        def __call__(self, prompts, completions, problem_id=None, **kwargs):
            seen: dict[str, int] = {}
            swapped = []
            for pid, c in zip(problem_id, completions):
                seen[pid] = seen.get(pid, -1) + 1
                swapped.append(self.problems[pid].solution if seen[pid] % 2 == 0 else c)
            return super().__call__(prompts, swapped, problem_id, **kwargs)

    monkeypatch.setattr(grpo, "VerifierReward", ProgramsReward)
    cfg = load_config(None, [
        "algorithm=grpo", f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path}", "task.name=code_embedded",
        "task.num_train=4", "task.num_test=1", "task.levels=[1,2]", "verifier.workers=2", "verifier.timeout_s=2.0",
        "grpo.max_steps=1", "grpo.eval_every=1", "grpo.group_size=4", "grpo.prompts_per_step=2",
        "sampling.max_tokens=4", "training.gradient_checkpointing=false", "grpo.backend=hf", "training.report_to=none"])
    sets = build_problem_sets(cfg, cfg.model_path())
    try:
        trainer = grpo.build_trainer(cfg, cfg.model_path(), sets.train, tmp_path / "trainer", grpo.StepLog(tmp_path), 1)
        trainer.train()
        health = sets.train.verifier.get().health()
    finally:
        sets.close()
    rollouts = [r for _, r in read_jsonl(Path(tmp_path) / "rollouts.jsonl")]
    assert len(rollouts) == 8
    for r in rollouts:
        if r["sample_idx"] % 2 == 0:  # the reference program passed its tests in a container
            assert (r["verdict"], r["reward"]) == ("pass", 1.0), r
        else:  # the tiny model's noise
            assert r["verdict"] == "fail" and r["reward"] == 0.0, r
    assert health["available"] and health["jobs_run"] >= 4 and health["alive"] == 2
    (step,) = [r for _, r in read_jsonl(Path(tmp_path) / "steps.jsonl")]
    assert step["verdicts"] == {"pass": 4, "fail": 4, "error": 0} and step["reward"] == pytest.approx(0.5)
    assert 0 < step["reward_s"] < step["step_s"]
