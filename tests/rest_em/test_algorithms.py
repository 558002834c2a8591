"""The algorithms of rest_em/algorithms/ through the real loop, with a fake sampler, verifier and trainer:
RCRL's reward token reaches training inputs and evaluation prompts but never a verifier or a report, the
HPT gate adds exactly the references of problems at or below the threshold, DPO pairs one correct and
one incorrect sample of the same problem, Expert Iteration's accumulated set has no duplicates, every
algorithm resumes after a crash, and grpo is dispatched to the online module."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from rest_em import training
from rest_em.algorithms.rcrl import CORRECT, INCORRECT, REWARD_TOKENS
from rest_em.config import ConfigError, load_config
from rest_em.loop import run
from rest_em.rundir import RunDir
from rest_em.sampling.params import Completion
from rest_em.tasks import load_task
from rest_em.verification import join_verdicts
from verifiers.io import read_jsonl
from verifiers.verdict import Verdict

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


class FakeSampler:
    """``\\boxed{answer}``: right when ``good(model, problem_index, sample_idx)``; sample 1's text changes
    with the seed (so it is new every iteration), sample 0's does not."""

    backend = "fake"

    def __init__(self, log, model_path, answers, good, leak=""):
        self.log, self.model_path, self.answers, self.good, self.leak = log, model_path, answers, good, leak

    def generate(self, prompts, params, desc="sampling"):
        self.log.append({"model": self.model_path, "prompts": list(prompts), "n": params.n})
        out = []
        for prompt in prompts:
            j, (q, ref) = next((j, qa) for j, qa in enumerate(self.answers.items()) if qa[0] in prompt)
            out.append([Completion(f"{self.leak}Try {i} seed {params.seed if i % 2 else 0}: \\boxed{{"
                                   f"{ref if self.good(self.model_path, j, i) else int(ref) + 1}}}.", "stop", 7)
                        for i in range(params.n)])
        return out

    def close(self):
        pass


class RecordingVerifier:
    """Math stand-in: passes a response holding ``\\boxed{reference}``; records every response it sees."""

    domain = "math"

    def __init__(self, seen):
        self.seen = seen

    def parse_item(self, row, where=""):
        return row

    def verify_batch(self, items):
        self.seen += [it["response"] for it in items]
        return [Verdict.passed() if f"\\boxed{{{it['reference']}}}" in it["response"] else Verdict.failed("wrong_answer")
                for it in items]

    def equivalent_batch(self, pairs):
        return [a == b for a, b in pairs]

    def close(self):
        pass


@pytest.fixture
def setup(tmp_path, tiny_model_dir, monkeypatch):
    def make(algorithm, good, iterations=2, overrides=(), leak="", name="t"):
        cfg = load_config(REPO / "configs" / "default.yaml", [
            f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
            "task.num_train=6", "task.num_test=4", "sampling.n=4", "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2",
            f"iterations={iterations}", f"algorithm={algorithm}", *overrides])
        task = load_task(cfg.task)
        answers = {p.question: p.payload["reference"] for p in (*task.train, *task.test)}
        state = {"log": [], "seen": [], "calls": [], "crash_at": None}
        monkeypatch.setattr("rest_em.sampling.make_sampler",
                            lambda path, backend="auto", **kw: FakeSampler(state["log"], path, answers, good, leak))
        monkeypatch.setattr("verifiers.registry.get_verifier", lambda domain, **kw: RecordingVerifier(state["seen"]))

        def spy_train(init, examples, config, output_dir):
            if state["crash_at"] is not None and f"iter_{state['crash_at']:02d}" in str(output_dir):
                state["crash_at"] = None
                raise RuntimeError("killed in the M-step")
            state["calls"].append({"init": str(init), "examples": list(examples), "out": str(output_dir)})
            shutil.copytree(init, output_dir)
            return training.TrainResult(str(output_dir), 1, 0.5, 0.1, 100.0, len(examples))

        monkeypatch.setattr(training, "train", spy_train)
        from rest_em.algorithms import dpo_trainer

        monkeypatch.setattr(dpo_trainer.TRLDPOTrainer, "train", lambda self, init, ex, out: spy_train(init, ex, None, out))
        return cfg, task, state

    return make


def test_expert_iteration_accumulates_a_deduplicated_union_from_the_base_model(setup):
    cfg, task, state = setup("expert_iteration", lambda m, j, i: i in (0, 1), iterations=3)
    run(cfg)
    base = str(cfg.model_path())
    assert [c["init"] for c in state["calls"]] == [base] * 3  # the preset: every round from the base model
    sizes = [len(c["examples"]) for c in state["calls"]]
    assert sizes == [12, 18, 24]  # sample 0 repeats every round (a duplicate), sample 1 is new every round
    for c in state["calls"]:
        keys = [(e["problem_id"], e["completion"].strip()) for e in c["examples"]]
        assert len(keys) == len(set(keys))
        assert {e["source"] for e in c["examples"]} == {"sample"}
    last = rows(cfg.run_dir() / "iter_03" / "train_set.jsonl")
    assert {e["iteration"] for e in last} == {1, 2, 3}
    info = RunDir(cfg.run_dir()).info(3, "dataset")
    assert info["duplicates_dropped_across_iterations"] == 6 and info["rows_from_earlier_iterations"] == 18
    assert "Training set (`expert_iteration`)" in (cfg.run_dir() / "report.md").read_text()


def test_mstep_init_previous_trains_the_previous_policy(setup):
    cfg, task, state = setup("rest_em", lambda m, j, i: i == 0, iterations=2, overrides=["mstep.init=previous"])
    run(cfg)
    assert [c["init"] for c in state["calls"]] == [str(cfg.model_path()), str(cfg.run_dir() / "iter_01" / "checkpoint")]


def test_rcrl_conditions_training_and_evaluation_on_the_reward_token_and_never_verifies_it(setup):
    # The fake "model" even writes a reward token into its text: it must be stripped before anything sees it.
    cfg, task, state = setup("rcrl", lambda m, j, i: i == 0, iterations=2, leak=CORRECT)
    run(cfg)
    base = str(cfg.model_path())
    first = state["calls"][0]
    assert first["init"] == str(cfg.run_dir() / "rcrl_base")  # the base model with the tokens added
    assert len(first["examples"]) == 6 * 4  # ALL samples (no error verdicts here), correct and incorrect
    for e in first["examples"]:
        assert e["prompt"].endswith(CORRECT if e["reward"] == "correct" else INCORRECT)
        assert not any(t in e["completion"] for t in REWARD_TOKENS)
    assert {e["reward"] for e in first["examples"]} == {"correct", "incorrect"}
    # The tokens are real special tokens of the tokenizer, and the embeddings were resized for them.
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(cfg.run_dir() / "iter_01" / "checkpoint"))
    ids = tok(e["prompt"], add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids(e["prompt"][-len(CORRECT if e["reward"] == "correct" else INCORRECT):])
    assert AutoConfig.from_pretrained(str(cfg.run_dir() / "rcrl_base")).vocab_size == len(tok)
    from rest_em.training.sft import tokenize_example

    ex = tokenize_example(tok, first["examples"][0]["prompt"], first["examples"][0]["completion"], 192, tok.eos_token_id)
    assert tok.convert_tokens_to_ids(CORRECT) in ex["input_ids"] or tok.convert_tokens_to_ids(INCORRECT) in ex["input_ids"]
    # Sampling: the base model as is (it has no such token); every checkpoint conditioned on the correct token.
    for call in state["log"]:
        if call["model"] == base:
            assert not any(CORRECT in p for p in call["prompts"])
        else:
            assert all(p.endswith(CORRECT) for p in call["prompts"])
    assert any(call["model"] != base for call in state["log"])
    # Nothing a verifier, a sample file or a report holds carries a reward token.
    assert state["seen"] and not any(t in text for text in state["seen"] for t in REWARD_TOKENS)
    for path in cfg.run_dir().rglob("*"):
        if path.is_file() and (path.suffix == ".md" or path.name in ("samples.jsonl", "verdicts.jsonl", "report.json")):
            assert "reward_correct" not in path.read_text() and "reward_incorrect" not in path.read_text(), path


def test_hpt_gate_adds_the_reference_exactly_at_or_below_the_threshold(setup):
    # Problems 0-1: never solved (rate 0); 2-3: 1 of 4 (0.25); 4-5: all 4 (1.0). Test problems come after.
    def good(model, j, i):
        return j >= 4 or (j in (2, 3) and i == 0)

    for threshold, gated_idx in ((0.0, {0, 1}), (0.25, {0, 1, 2, 3})):
        cfg, task, state = setup("hpt_gate", good, iterations=1, overrides=[f"hpt.threshold={threshold}"],
                                 name=f"hpt{threshold}")
        run(cfg)
        gated = {task.train[j].problem_id for j in gated_idx}
        ex = state["calls"][0]["examples"]
        refs = [e for e in ex if e["source"] == "reference"]
        assert {e["problem_id"] for e in refs} == gated and len(refs) == len(gated)
        by_id = {p.problem_id: p for p in task.train}
        assert all(e["completion"] == by_id[e["problem_id"]].solution for e in refs)
        samples = [e for e in ex if e["source"] == "sample"]
        assert samples and not {e["problem_id"] for e in samples} & gated
        info = RunDir(cfg.run_dir()).info(1, "dataset")
        assert info["sources"] == {"reference": len(gated), "sample": len(samples)}
        report = (cfg.run_dir() / "report.md").read_text()
        assert f"reference {len(gated)}, sample {len(samples)}" in report


def test_hpt_gate_refuses_a_task_without_reference_solutions(setup):
    from rest_em.algorithms.hpt import HPTGate

    cfg, task, _ = setup("hpt_gate", lambda m, j, i: True)
    no_refs = types.SimpleNamespace(train=types.SimpleNamespace(
        task=types.SimpleNamespace(name="humaneval"), problems=task.train))
    with pytest.raises(ConfigError, match="hpt_gate needs reference solutions.*humaneval"):
        HPTGate(cfg, RunDir(cfg.run_dir()), cfg.model_path()).check(no_refs)


def test_dpo_pairs_come_from_one_problem_with_different_verdicts():
    from rest_em.algorithms.dpo import build_pairs

    samples, verdicts = [], []
    plan = {"mixed": ["pass", "pass", "fail", "fail", "fail", "error"], "good": ["pass"] * 3, "bad": ["fail"] * 3,
            "broken": ["error"] * 2}
    for pid, outcomes in plan.items():
        for i, o in enumerate(outcomes):
            samples.append({"problem_id": pid, "sample_idx": i, "text": f"{pid} {i}"})
            verdicts.append({"problem_id": pid, "sample_idx": i, "verdict": o})
    prompts = {pid: f"Q {pid}" for pid in plan}
    pairs, info = build_pairs(join_verdicts(samples, verdicts), prompts, pairs_per_problem=4, dedupe=True, seed=0, iteration=1)
    verdict_of = {(v["problem_id"], v["sample_idx"]): v["verdict"] for v in verdicts}
    assert len(pairs) == 4 and {p["problem_id"] for p in pairs} == {"mixed"}
    for p in pairs:
        assert verdict_of[(p["problem_id"], p["chosen_idx"])] == "pass"
        assert verdict_of[(p["problem_id"], p["rejected_idx"])] == "fail"
        assert p["chosen"] == f"mixed {p['chosen_idx']}" and p["rejected"] == f"mixed {p['rejected_idx']}"
        assert p["prompt"] == "Q mixed"
    assert len({(p["chosen_idx"], p["rejected_idx"]) for p in pairs}) == 4
    assert info == {"problems": 4, "problems_with_pairs": 1, "problems_only_correct": 1, "problems_only_incorrect": 1,
                    "problems_without_valid_samples": 1, "pairs": 4}
    again, _ = build_pairs(join_verdicts(samples, verdicts), prompts, pairs_per_problem=4, dedupe=True, seed=0, iteration=1)
    assert again == pairs  # seeded
    all_pairs, _ = build_pairs(join_verdicts(samples, verdicts), prompts, pairs_per_problem=100, dedupe=True, seed=0, iteration=1)
    assert len(all_pairs) == 2 * 3


def test_dpo_through_the_loop_with_an_sft_start(setup):
    cfg, task, state = setup("dpo", lambda m, j, i: i % 2 == 0, iterations=2,
                             overrides=["dpo.init=sft", "dpo.pairs_per_problem=2"])
    run(cfg)
    root = cfg.run_dir()
    # Per iteration: SFT of the base on the correct samples, then DPO from that SFT iterate.
    assert [c["out"] for c in state["calls"]] == [str(root / "iter_01" / "sft_checkpoint"), str(root / "iter_01" / "checkpoint"),
                                                  str(root / "iter_02" / "sft_checkpoint"), str(root / "iter_02" / "checkpoint")]
    assert state["calls"][0]["init"] == str(cfg.model_path())
    assert state["calls"][1]["init"] == str(root / "iter_01" / "sft_checkpoint")
    pairs = state["calls"][1]["examples"]
    assert len(pairs) == 6 * 2 and all(set(p) >= {"prompt", "chosen", "rejected"} for p in pairs)
    report = json.loads((root / "report.json").read_text())
    assert report["iterations"][1]["dataset"]["problems_with_pairs"] == 6


@pytest.mark.parametrize("init", ["base", "sft"])
def test_dpo_with_no_pair_keeps_the_start_and_says_why(setup, init):
    cfg, task, state = setup("dpo", lambda m, j, i: True, iterations=1,  # all correct: no incorrect sample
                             overrides=[f"dpo.init={init}"])
    run(cfg)
    info = RunDir(cfg.run_dir()).info(1, "train")
    assert info["skipped"] and "pair" in info["reason"]
    data = json.loads((cfg.run_dir() / "report.json").read_text())
    assert data["iterations"][1]["dataset"]["problems_only_correct"] == 6
    if init == "base":  # nothing trained: the base model stays the policy
        assert state["calls"] == [] and data["iterations"][1]["policy"] == "base model (M-step skipped)"
    else:  # the SFT start trained on the correct samples is the start DPO would have left, and the policy
        sft_start = str(cfg.run_dir() / "iter_01" / "sft_checkpoint")
        assert [c["out"] for c in state["calls"]] == [sft_start]
        assert data["iterations"][1]["policy"] == "iter_01/sft_checkpoint (M-step skipped)", data["iterations"][1]["policy"]


@pytest.mark.parametrize("algorithm", ["rest_em", "expert_iteration", "rcrl", "hpt_gate", "dpo"])
def test_each_algorithm_resumes_after_a_crash(setup, algorithm):
    cfg, task, state = setup(algorithm, lambda m, j, i: i % 2 == 0 or j == 0, iterations=2)
    state["crash_at"] = 2  # the M-step of iteration 2 dies
    with pytest.raises(RuntimeError, match="killed"):
        run(cfg)
    rd = RunDir(cfg.run_dir())
    assert rd.done(1, "train") and rd.done(2, "samples") and not rd.done(2, "train")
    before = len(state["log"])
    first_rows = (rd.iter_dir(2) / ("train_set.jsonl" if algorithm != "rest_em" else "sft.jsonl")).read_text()
    run(cfg)
    resumed = state["log"][before:]
    # Only iteration 2's evaluation samples again (greedy + sampled); no E-step or finished stage is redone.
    assert [c["n"] for c in resumed] == [1, 2]
    assert rd.done(2, "train") and (rd.iter_dir(2) / "checkpoint" / "config.json").exists()
    assert (rd.iter_dir(2) / ("train_set.jsonl" if algorithm != "rest_em" else "sft.jsonl")).read_text() == first_rows
    assert [e["iteration"] for e in json.loads((cfg.run_dir() / "report.json").read_text())["iterations"]] == [0, 1, 2]


def test_compare_puts_runs_side_by_side_and_refuses_different_evaluations(setup, tmp_path, capsys):
    from rest_em.cli import main

    cfg_a, _, _ = setup("rest_em", lambda m, j, i: i == 0, iterations=1, name="a")
    run(cfg_a)
    cfg_b, _, _ = setup("hpt_gate", lambda m, j, i: i == 0 and j < 3, iterations=1, name="b")
    run(cfg_b)
    out = tmp_path / "cmp" / "compare.md"
    assert main(["compare", str(cfg_a.run_dir()), str(cfg_b.run_dir()), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert text == out.read_text() and (tmp_path / "cmp" / "compare.png").exists()
    table = [line for line in text.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    assert [line.split("|")[1:4] for line in table][:4] == [[" a ", " rest_em ", " 0 "], [" a ", " rest_em ", " 1 "],
                                                           [" b ", " hpt_gate ", " 0 "], [" b ", " hpt_gate ", " 1 "]]
    assert "greedy_pass@1 | pass@1 | pass@2 | maj@2 | train coverage | train rows" in text
    assert "## Per level" in text and "## Wall time per run" in text
    # hpt_gate's train rows count its references: 3 solved problems' samples + 3 references.
    assert "| b | hpt_gate | 1 | " in text and "| 50.0 | 6 |" in text.split("| b | hpt_gate | 1 | ")[1].split("\n")[0]
    cfg_c, _, _ = setup("rest_em", lambda m, j, i: i == 0, iterations=1, name="c", overrides=["eval.temperature=0.5"])
    run(cfg_c)
    assert main(["compare", str(cfg_a.run_dir()), str(cfg_c.run_dir())]) == 2
    assert "eval.temperature: 1.0 -> 0.5" in capsys.readouterr().err
    cfg_d, _, _ = setup("rest_em", lambda m, j, i: i == 0, iterations=1, name="d", overrides=["task.num_test=3"])
    run(cfg_d)
    assert main(["compare", str(cfg_a.run_dir()), str(cfg_d.run_dir())]) == 2
    assert "task.num_test: 4 -> 3" in capsys.readouterr().err


def test_reference_completions_of_math_and_code_tasks():
    from rest_em.algorithms.hpt import reference_completion
    from rest_em.config import TaskSection
    from rest_em.tasks.base import Problem

    code = load_task(TaskSection(name="code_embedded", num_train=3, num_test=1))
    for p in code.train:
        ref = reference_completion("code", p)
        assert ref == p.solution and ref.startswith("```python\n") and ref.rstrip().endswith("```")
    raw = Problem("apps-1", "Print 1.", {"tests": {}}, solution="print(1)\n")
    assert reference_completion("code", raw) == "```python\nprint(1)\n```"
    math = load_task(TaskSection(name="arithmetic", num_train=2, num_test=1))
    assert all("\\boxed{" in reference_completion("math", p) for p in math.train)
    assert reference_completion("math", Problem("x", "q", {}, solution=None)) is None


def test_rcrl_rows_keep_every_sample_unless_incorrect_ones_are_capped():
    from rest_em.algorithms.rcrl import reward_rows

    samples = [{"problem_id": p, "sample_idx": i, "text": f"{p} {i}"} for p in ("a", "b") for i in range(4)]
    verdicts = [{"problem_id": s["problem_id"], "sample_idx": s["sample_idx"],
                 "verdict": ["pass", "fail", "fail", "error"][s["sample_idx"]]} for s in samples]
    prompts = {"a": "A", "b": "B"}
    every = reward_rows(join_verdicts(samples, verdicts), prompts, dedupe=True, iteration=1)
    assert [(r["problem_id"], r["sample_idx"], r["prompt"]) for r in every] == [
        ("a", 0, "A" + CORRECT), ("a", 1, "A" + INCORRECT), ("a", 2, "A" + INCORRECT),
        ("b", 0, "B" + CORRECT), ("b", 1, "B" + INCORRECT), ("b", 2, "B" + INCORRECT)]
    capped = reward_rows(join_verdicts(samples, verdicts), prompts, dedupe=True, iteration=1, incorrect_per_problem=1, seed=0)
    assert [r["reward"] for r in capped] == ["correct", "incorrect"] * 2
    assert capped == reward_rows(join_verdicts(samples, verdicts), prompts, True, 1, 1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["dpo", "rcrl", "hpt_gate", "expert_iteration"])
def test_kill_9_and_resume_with_real_training(tmp_path, tiny_model_dir, algorithm):
    """The real sampler and trainer (TRL's DPOTrainer for dpo) on the tiny model, SIGKILLed during the first
    M-step and again in iteration 2, then finished by rerunning the same command."""
    import os
    import signal
    import subprocess
    import time

    from test_loop import DRIVER  # the driver that stands in a fake verifier (pytest puts this folder on sys.path)

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "runs" / "kill"
    cmd = [sys.executable, str(driver), "iterate", "--config", str(REPO / "configs" / "default.yaml"), "--iterations", "2",
           f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "run.name=kill", "sampling.backend=hf",
           "task.num_train=4", "task.num_test=3", "sampling.n=4", "sampling.max_tokens=6", "eval.max_tokens=6",
           "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2", "training.num_epochs=1", "training.per_device_batch_size=4",
           "model.dtype=float32", f"algorithm={algorithm}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run_until(path: Path | None, timeout_s: float = 300) -> None:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if path is not None and path.exists():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            time.sleep(0.02)
        out = proc.communicate(timeout=timeout_s)[0].decode()
        assert path is None and proc.returncode == 0, out

    run_until(run_dir / "iter_01" / ".done" / "dataset.json")  # killed as the first M-step starts
    run_until(run_dir / "iter_02" / "samples.jsonl")  # killed again in iteration 2
    run_until(None)
    for t in (1, 2):
        d = run_dir / f"iter_{t:02d}"
        assert (d / "checkpoint" / "model.safetensors").exists()
        keys = [json.dumps(r, sort_keys=True) for r in rows(d / "train_set.jsonl")]
        assert keys and len(keys) == len(set(keys))
    data = json.loads((run_dir / "report.json").read_text())
    assert [e["iteration"] for e in data["iterations"]] == [0, 1, 2]
    assert all(e["dataset"] for e in data["iterations"][1:])
    assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob("*.partial"))


def test_a_run_created_before_a_config_section_existed_resumes(setup):
    import yaml

    cfg, _, _ = setup("rest_em", lambda m, j, i: i == 0, iterations=1)
    run(cfg)
    path = cfg.run_dir() / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    for key in ("mstep", "hpt", "dpo", "rcrl"):
        saved.pop(key)
    saved["filter"].pop("accumulate")
    path.write_text(yaml.safe_dump(saved))
    RunDir.open(cfg)  # the keys it lacks have their defaults in cfg: the same run
    path.write_text(yaml.safe_dump({k: v for k, v in saved.items() if k != "dpo"}))
    cfg.dpo.beta = 0.5
    with pytest.raises(ConfigError, match=r"dpo.beta: 0.1 -> 0.5"):
        RunDir.open(cfg)


def test_a_run_saved_with_keys_renamed_since_resumes(setup):
    """An older version saved ``training.dtype`` and the ``grpo.*`` twins of shared keys; the run resumes."""
    import yaml

    cfg, _, _ = setup("rest_em", lambda m, j, i: i == 0, iterations=1)
    run(cfg)
    path = cfg.run_dir() / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    saved["training"]["dtype"] = saved["model"]["dtype"]
    saved["grpo"]["temperature"] = saved["sampling"]["temperature"] + 0.3  # a ReST-EM run never read it
    saved["grpo"]["report_to"] = []
    path.write_text(yaml.safe_dump(saved))
    RunDir.open(cfg)
    saved["model"]["dtype"] = "float16" if cfg.model.dtype != "float16" else "float32"
    saved["training"]["dtype"] = saved["model"]["dtype"]
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"model.dtype"):  # a real difference is still one
        RunDir.open(cfg)


def test_a_grpo_run_saved_with_its_old_keys_resumes_with_the_values_it_used(tmp_path, tiny_model_dir):
    import yaml

    from rest_em.config import config_to_dict

    cfg = load_config(REPO / "configs" / "grpo-default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "sampling.temperature=1.0"])
    RunDir.open(cfg)
    path = cfg.run_dir() / "config.yaml"
    saved = config_to_dict(cfg)
    saved["grpo"]["temperature"] = 1.0  # the value the old GRPO read ...
    saved["sampling"]["temperature"] = 0.7  # ... beside the shared key it did not read
    path.write_text(yaml.safe_dump(saved))
    RunDir.open(cfg)
    saved["grpo"]["temperature"] = 0.9
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"sampling.temperature: 0.9 -> 1.0"):
        RunDir.open(cfg)
