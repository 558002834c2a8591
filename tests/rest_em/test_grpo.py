"""GRPO (algorithm: grpo) with TRL's GRPOTrainer on the tiny model: evaluation rows every eval_every steps,
an error verdict is no reward (left out of the advantage), too many errors stop the run before it trains,
and a killed run resumes from its last checkpoint with the trainer state."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rest_em.cli import main
from rest_em.config import load_config
from rest_em.rundir import RunDir
from verifiers.io import read_jsonl
from verifiers.verdict import Verdict

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


class IndexVerifier:
    """Math stand-in (the tiny model writes noise): the verdict of a sample is ``rule(problem_id, sample_idx)``."""

    domain = "math"

    def __init__(self, rule, calls: list) -> None:
        self.rule, self.calls = rule, calls

    def parse_item(self, row, where=""):
        return row

    def verify_batch(self, items):
        ids = [str(it["id"]).rsplit("#", 1) for it in items]
        self.calls.append([pid for pid, _ in ids])
        return [self.rule(pid, int(idx)) for pid, idx in ids]

    def equivalent_batch(self, pairs):
        return [a == b for a, b in pairs]

    def close(self):
        pass


def even_pass(pid, idx):
    return Verdict.passed() if idx % 2 == 0 else Verdict.failed("wrong_answer")


@pytest.fixture
def grpo(tmp_path, tiny_model_dir, monkeypatch):
    """(overrides, calls): a tiny GRPO config; ``use(rule)`` installs the stand-in verifier."""
    calls: list = []

    def use(rule):
        monkeypatch.setattr("verifiers.registry.get_verifier", lambda domain, **kw: IndexVerifier(rule, calls))

    overrides = [
        "algorithm=grpo", f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "model.dtype=float32",
        "task.num_train=4", "task.num_test=2", "sampling.backend=hf", "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2",
        "eval.max_tokens=4", "grpo.group_size=4", "grpo.prompts_per_step=2", "sampling.max_tokens=4",
        "training.learning_rate=1e-3", "training.gradient_checkpointing=false", "grpo.backend=hf", "training.report_to=none"]
    return overrides, calls, use


def train_calls(calls):
    return [c for c in calls if all("-train-" in pid for pid in c)]


def test_iterate_runs_grpo_with_an_evaluation_every_eval_every_steps(grpo, tmp_path):
    overrides, calls, use = grpo
    use(even_pass)
    assert main(["iterate", "--config", str(REPO / "configs" / "grpo-default.yaml"), *overrides, "run.name=a",
                 "grpo.max_steps=3", "grpo.eval_every=2", "grpo.beta=0.04", "grpo.partial_credit.wrong_answer=0.5"]) == 0
    root = tmp_path / "runs" / "a"
    rd = RunDir(root)
    assert rd.iterations() == [0, 1, 2]  # steps 2 and 3 (the last segment is shorter)
    assert [rd.info(t, "train")["steps"] for t in (1, 2)] == [2, 3]
    assert rd.info(2, "train")["first_step"] == 3 and rd.info(2, "train")["kl"] is not None
    steps = rows(root / "grpo" / "steps.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["verdicts"] == {"pass": 4, "fail": 4, "error": 0}  # 2 prompts x 4 completions, all verified
        # half pass (1.0), half fail with a wrong answer (partial credit 0.5)
        assert r["reward"] == pytest.approx(0.75) and r["frac_reward_zero_std"] == 0.0
        assert r["completion_length"] is not None and r["kl"] is not None and r["reward_s"] <= r["step_s"]
    assert len(train_calls(calls)) == 3 and all(len(c) == 8 for c in train_calls(calls))  # one batch per step
    rollouts = rows(root / "grpo" / "rollouts.jsonl")
    assert len(rollouts) == 24 and {(r["verdict"], r["reward"]) for r in rollouts} == {("pass", 1.0), ("fail", 0.5)}
    # The evaluated policies are exported checkpoints that moved away from the base model.
    from safetensors.torch import load_file

    w0 = load_file(str(Path(load_config(None, overrides).model.path) / "model.safetensors"))
    w1 = load_file(str(root / "iter_01" / "checkpoint" / "model.safetensors"))
    assert any((w0[k] != w1[k]).any() for k in w1)
    assert not (root / "iter_01" / "checkpoint" / "optimizer.pt").exists()
    data = json.loads((root / "report.json").read_text())
    assert [e["policy"] for e in data["iterations"]] == ["base model", "iter_01/checkpoint", "iter_02/checkpoint"]
    assert all(e["eval"]["greedy_pass@1"] is not None for e in data["iterations"])
    report = (root / "report.md").read_text()
    assert "Online training (GRPO)" in report and "(reward.png)" in report and (root / "reward.png").exists()
    assert "pass 1, fail 0, fail `wrong_answer` 0.5; `error` is no reward" in report


def test_error_verdicts_get_no_reward_and_no_advantage(grpo, tmp_path):
    from rest_em.algorithms.grpo import StepLog, build_trainer
    from rest_em.problem_sets import build_problem_sets

    overrides, calls, use = grpo
    use(lambda pid, idx: Verdict.errored("sandbox_error", "boom") if idx == 0 else
        Verdict.passed() if idx == 1 else Verdict.failed("wrong_answer"))
    cfg = load_config(None, [*overrides, "run.name=b", "grpo.max_steps=1", "grpo.eval_every=1",
                             "verifier.max_error_rate=0.3"])
    sets = build_problem_sets(cfg, cfg.model_path())
    trainer = build_trainer(cfg, cfg.model_path(), sets.train, tmp_path / "trainer", StepLog(tmp_path), stop_at=1)
    trainer.train()
    rewards = list(trainer._logs["rewards"]["verifier_math"])
    advantages = list(trainer._logs["advantages"])
    assert len(rewards) == len(advantages) == 8
    for i, (r, a) in enumerate(zip(rewards, advantages)):
        if i % 4 == 0:  # the error: NaN (TRL's "no reward"), advantage 0 -- not a 0 or a 1
            assert math.isnan(r) and a == 0.0
        elif i % 4 == 1:
            assert r == 1.0 and a > 0
        else:
            assert r == 0.0 and a < 0
    # The group baseline is the mean of the scored completions only: 1 pass of 3, not 1 of 4.
    assert advantages[1] == pytest.approx((1 - 1 / 3) / math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2), rel=1e-3)
    (step,) = rows(tmp_path / "steps.jsonl")
    assert step["verdicts"] == {"pass": 2, "fail": 4, "error": 2} and step["error_rate"] == 0.25


def test_error_rate_above_the_threshold_stops_the_run_before_training(grpo, tmp_path, capsys):
    overrides, calls, use = grpo
    # Train problems cannot be verified (the evaluation's can): our side broke, the model did nothing wrong.
    use(lambda pid, idx: Verdict.errored("sandbox_unavailable", "Cannot connect to the Docker daemon")
        if "-train-" in pid and idx < 2 else even_pass(pid, idx))
    argv = ["iterate", *overrides, "run.name=c", "grpo.max_steps=2", "grpo.eval_every=1", "verifier.max_error_rate=0.4"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "GRPO step 1: 4 of 8 verdicts are errors" in err and "docker info" in err
    root = tmp_path / "runs" / "c"
    rd = RunDir(root)
    assert rd.done(0, "eval") and not rd.done(1, "train")
    assert not list((root / "grpo" / "trainer").glob("checkpoint-*"))  # nothing trained on the broken rewards
    assert not (root / "grpo" / "steps.jsonl").exists()


def test_a_killed_run_resumes_from_its_last_checkpoint(grpo, tmp_path):
    overrides, calls, use = grpo
    state = {"kill_at_call": 4}

    def rule(pid, idx):
        return even_pass(pid, idx)

    class Killed(Exception):
        pass

    def killing_rule(pid, idx):
        if "-train-" in pid and len(train_calls(calls)) == state["kill_at_call"]:
            raise Killed("simulated kill -9 in step 4")
        return rule(pid, idx)

    use(killing_rule)
    argv = [*overrides, "run.name=d", "grpo.max_steps=4", "grpo.eval_every=4", "grpo.save_every=2"]
    from rest_em.loop import run

    with pytest.raises(Killed):
        run(load_config(None, argv))
    root = tmp_path / "runs" / "d"
    assert [r["step"] for r in rows(root / "grpo" / "steps.jsonl")] == [1, 2, 3]  # step 3 after the last checkpoint
    assert [p.name for p in (root / "grpo" / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]

    calls.clear()
    use(rule)
    run(load_config(None, argv))
    assert len(train_calls(calls)) == 2  # steps 3 and 4 only: resumed from checkpoint-2, not from the start
    assert [r["step"] for r in rows(root / "grpo" / "steps.jsonl")] == [1, 2, 3, 4]  # step 3 counted once
    trainer_state = json.loads((root / "grpo" / "trainer" / "checkpoint-4" / "trainer_state.json").read_text())
    assert trainer_state["global_step"] == 4
    assert [h["step"] for h in trainer_state["log_history"] if "loss" in h] == [1, 2, 3, 4]  # the restored state
    assert RunDir(root).info(1, "train")["first_step"] == 3


def test_a_lora_grpo_run_exports_the_merged_policy(grpo, tmp_path):
    """training.lora under GRPO: TRL trains the adapter (peft_config); the exported checkpoint is a plain model
    (no adapter files) whose weights moved away from the base model, and the trainer checkpoint holds the adapter."""
    from safetensors.torch import load_file

    overrides, calls, use = grpo
    use(even_pass)
    cfg = load_config(None, [*overrides, "run.name=lora", "grpo.max_steps=2", "grpo.eval_every=2",
                             "training.lora.r=4", "training.learning_rate=5e-2"])
    assert not any("training.lora" in w for w in cfg.warnings())
    assert main(["iterate", *overrides, "run.name=lora", "grpo.max_steps=2", "grpo.eval_every=2",
                 "training.lora.r=4", "training.learning_rate=5e-2"]) == 0
    root = tmp_path / "runs" / "lora"
    assert (root / "grpo" / "trainer" / "checkpoint-2" / "adapter_config.json").exists()
    out = root / "iter_01" / "checkpoint"
    assert not (out / "adapter_config.json").exists() and (out / "config.json").exists()
    assert (out / "tokenizer_config.json").exists()
    w0 = load_file(str(Path(cfg.model.path) / "model.safetensors"))
    w1 = load_file(str(out / "model.safetensors"))
    assert set(w1) <= set(w0) and not any("lora" in k for k in w1)
    moved = [k for k in w1 if (w0[k] != w1[k]).any()]
    assert moved and all(k.endswith("proj.weight") for k in moved)  # only the adapted linear layers changed
