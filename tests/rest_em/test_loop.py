"""The loop: every M-step starts from the base model, a zero-correct E-step is handled, and a run
killed with SIGKILL resumes without losing or duplicating a sample."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rest_em import training
from rest_em.config import ConfigError, load_config
from rest_em.loop import run
from rest_em.rundir import RunDir
from rest_em.sampling.params import Completion
from rest_em.tasks import load_task
from verifiers.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


class FakeSampler:
    """Answers every prompt with ``\\boxed{X}``: the right answer when ``good(model, sample_idx)``."""

    backend = "fake"

    def __init__(self, log: list, model_path: str, answers: dict[str, str], good) -> None:
        self.model_path, self.answers, self.good, self.log = model_path, answers, good, log
        log.append(("open", model_path))

    def generate(self, prompts, params, desc="sampling"):
        self.log.append(("generate", self.model_path, len(prompts), params.n, params.temperature))
        out = []
        for prompt in prompts:
            ref = next(a for q, a in self.answers.items() if q in prompt)
            out.append([Completion(f"Try {i}: x = \\boxed{{{ref if self.good(self.model_path, i) else int(ref) + 1}}}.", "stop", 7)
                        for i in range(params.n)])
        return out

    def close(self):
        self.log.append(("close", self.model_path))


@pytest.fixture
def setup(tmp_path, tiny_model_dir, monkeypatch):
    """A tiny config, a fake sampler (monkeypatched into make_sampler) and a spy on train."""

    def make(good, iterations=3):
        cfg = load_config(REPO / "configs" / "default.yaml", [
            f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "run.name=t",
            "task.num_train=6", "task.num_test=4", "sampling.n=4", "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2",
            "verifier.workers=1", f"iterations={iterations}"])
        task = load_task(cfg.task)
        answers = {p.question: p.payload["reference"] for p in (*task.train, *task.test)}
        log: list = []
        monkeypatch.setattr("rest_em.sampling.make_sampler",
                            lambda path, backend="auto", **kw: FakeSampler(log, path, answers, good))
        calls: list = []

        def spy_train(base_model_path, examples, config, output_dir):
            calls.append({"base": base_model_path, "examples": list(examples), "out": output_dir})
            shutil.copytree(base_model_path, output_dir)
            return training.TrainResult(output_dir, 1, 0.5, 0.1, 100.0, len(examples))

        monkeypatch.setattr(training, "train", spy_train)
        return cfg, log, calls

    return make


def test_every_m_step_trains_the_base_model(setup):
    # The base model gets sample 0 right; every checkpoint gets samples 0-1 right.
    cfg, log, calls = setup(lambda model, i: i == 0 or (model.endswith("checkpoint") and i == 1))
    report = run(cfg)
    base = str(cfg.model_path())
    ckpt = [str(cfg.run_dir() / f"iter_{t:02d}" / "checkpoint") for t in (1, 2, 3)]
    assert [c["base"] for c in calls] == [base, base, base]
    assert [c["out"] for c in calls] == ckpt
    # E-step t samples from the policy of t-1; one sampler per model serves its eval and the next E-step.
    assert [e[1] for e in log if e[0] == "open"] == [base, *ckpt]
    gens = [(e[1], e[3]) for e in log if e[0] == "generate"]
    assert gens == [(base, 1), (base, 2), (base, 4),
                    (ckpt[0], 1), (ckpt[0], 2), (ckpt[0], 4),
                    (ckpt[1], 1), (ckpt[1], 2), (ckpt[1], 4),
                    (ckpt[2], 1), (ckpt[2], 2)]
    # SFT sets come from each iteration's own samples, errors excluded, capped.
    assert {e["iteration"] for e in calls[0]["examples"]} == {1} and len(calls[0]["examples"]) == 6
    assert {e["sample_idx"] for e in calls[1]["examples"]} == {0, 1} and len(calls[1]["examples"]) == 12
    data = json.loads((cfg.run_dir() / "report.json").read_text())
    assert [e["iteration"] for e in data["iterations"]] == [0, 1, 2, 3]
    assert data["iterations"][0]["eval"]["greedy_pass@1"] == 1.0
    assert data["iterations"][1]["train_set"]["coverage"] == 1.0
    assert report.exists() and (cfg.run_dir() / "metrics.png").exists()


def test_zero_correct_samples_keep_the_base_model(setup, caplog):
    cfg, log, calls = setup(lambda model, i: False, iterations=2)
    run(cfg)
    assert calls == []  # nothing to train on: train is never called
    assert [e[1] for e in log if e[0] == "open"] == [str(cfg.model_path())]
    rd = RunDir(cfg.run_dir())
    assert rd.info(1, "train")["skipped"] and rd.info(2, "train")["skipped"]
    assert rows(cfg.run_dir() / "iter_01" / "sft.jsonl") == []
    assert not (cfg.run_dir() / "iter_01" / "checkpoint").exists()
    data = json.loads((cfg.run_dir() / "report.json").read_text())
    assert data["iterations"][1]["policy"] == "base model (M-step skipped)"
    assert data["iterations"][2]["eval"]["greedy_pass@1"] == 0.0
    assert "M-step skipped" in (cfg.run_dir() / "report.md").read_text()
    assert "no correct solution" in caplog.text


def test_resume_with_a_different_config_is_an_error(setup):
    cfg, _, _ = setup(lambda model, i: i == 0, iterations=1)
    run(cfg)
    changed = load_config(REPO / "configs" / "default.yaml", [])
    changed.run, changed.model, changed.task = cfg.run, cfg.model, cfg.task
    changed.sampling.n = 5
    with pytest.raises(ConfigError, match=r"sampling.n: 4 -> 5"):
        RunDir.open(changed)
    cfg.iterations = 2  # more iterations of the same run are fine
    RunDir.open(cfg)


def test_resume_removes_temp_files_left_by_a_kill(setup):
    cfg, _, _ = setup(lambda model, i: i == 0, iterations=1)
    run(cfg)
    root = cfg.run_dir()
    stale = [root / "iter_01" / ".done" / ".samples.json.x1y2.tmp", root / "iter_01" / ".samples.jsonl.abc.tmp"]
    for p in stale:
        p.write_text("half a row")  # what kill -9 between mkstemp and rename leaves behind
    keep = root / "iter_01" / "samples.jsonl"
    RunDir.open(cfg)
    assert not any(p.exists() for p in stale)
    assert keep.exists()


DRIVER = '''
import sys
import verifiers.registry as registry
from verifiers.verdict import Verdict


class EvenSamplesPass:
    """Stands in for the math verifier: even sample indices pass (the tiny model is random)."""
    domain = "math"
    def parse_item(self, row, where=""):
        return row
    def verify_batch(self, items):
        return [Verdict.passed() if int(str(it["id"]).rsplit("#", 1)[1]) % 2 == 0 else Verdict.failed("wrong_answer")
                for it in items]
    def equivalent_batch(self, pairs):
        return [a == b for a, b in pairs]
    def close(self):
        pass


registry.get_verifier = lambda domain, **options: EvenSamplesPass()
from rest_em.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_kill_9_and_resume(tmp_path, tiny_model_dir):
    """Real sampler (transformers) and real training on the tiny model; SIGKILL twice, then finish."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "runs" / "kill"
    cmd = [sys.executable, str(driver), "iterate", "--config", str(REPO / "configs" / "default.yaml"), "--iterations", "2",
           f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "run.name=kill", "sampling.backend=hf",
           "task.num_train=4", "task.num_test=3", "sampling.n=4", "sampling.max_tokens=6", "eval.max_tokens=6",
           "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2", "training.num_epochs=1", "training.per_device_batch_size=4",
           "model.dtype=float32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run_until(path: Path | None, timeout_s: float = 120) -> int | None:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if path is not None and path.exists():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
            time.sleep(0.02)
        out = proc.communicate(timeout=timeout_s)[0].decode()
        assert proc.returncode == 0, out
        return proc.returncode

    assert run_until(run_dir / "iter_01" / "samples.jsonl") is None  # killed after the first E-step sampled
    assert run_until(run_dir / "iter_02" / "samples.jsonl") is None  # killed again in iteration 2
    assert run_until(None) == 0

    for t in (1, 2):
        d = run_dir / f"iter_{t:02d}"
        samples, verdicts, sft = rows(d / "samples.jsonl"), rows(d / "verdicts.jsonl"), rows(d / "sft.jsonl")
        keys = [(r["problem_id"], r["sample_idx"]) for r in samples]
        assert len(keys) == len(set(keys)) == 4 * 4 and {r["iteration"] for r in samples} == {t}
        assert [(r["problem_id"], r["sample_idx"]) for r in verdicts] == keys
        assert {(r["problem_id"], r["sample_idx"]) for r in sft} <= {k for k in keys if k[1] % 2 == 0}
        assert (d / "checkpoint" / "config.json").exists()
    for t in (0, 1, 2):
        ev = rows(run_dir / f"iter_{t:02d}" / "eval" / "samples.jsonl")
        assert sorted((r["mode"], r["problem_id"], r["sample_idx"]) for r in ev) == sorted(
            {(m, r["problem_id"], i) for r in ev for m, i in (("greedy", 0), ("sampled", 0), ("sampled", 1))})
        assert len(ev) == 3 * 3
    data = json.loads((run_dir / "report.json").read_text())
    assert [e["iteration"] for e in data["iterations"]] == [0, 1, 2]
    assert not list(run_dir.rglob("*.tmp"))  # no half-written file left behind

    # Iteration 2's checkpoint is the base model trained on iteration 2's SFT set -- not iteration 1's
    # checkpoint trained further: retraining the base on the same rows reproduces its weights.
    from safetensors.torch import load_file

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["meta"]["versions"]["torch"]
    again = training.train(tiny_model_dir, rows(run_dir / "iter_02" / "sft.jsonl"), training.TrainConfig(**saved["training"]),
                           str(tmp_path / "again"))
    w_again = load_file(str(Path(again.checkpoint_dir) / "model.safetensors"))
    w_iter2 = load_file(str(run_dir / "iter_02" / "checkpoint" / "model.safetensors"))
    w_iter1 = load_file(str(run_dir / "iter_01" / "checkpoint" / "model.safetensors"))
    assert all((w_again[k] == w_iter2[k]).all() for k in w_iter2)
    assert any((w_iter1[k] != w_iter2[k]).any() for k in w_iter2)
