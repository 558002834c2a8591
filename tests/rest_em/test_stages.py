"""Stage plumbing: the run directory owns stage I/O, a verifier outage stops the run unmarked and the
rerun re-verifies only the error rows, and the config names values that are set but unused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rest_em import training
from rest_em.config import ConfigError, load_config
from rest_em.loop import run
from rest_em.rundir import RunDir
from rest_em.verification import VerifierOutage
from verifiers.io import read_jsonl
from verifiers.verdict import Verdict

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def test_stage_rows_computes_once_and_reads_back(tmp_path):
    rd = RunDir(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return [{"problem_id": "p", "sample_idx": 0}], {"seconds": 1.0}

    first = rd.stage_rows(1, "samples", "samples.jsonl", compute)
    again = rd.stage_rows(1, "samples", "samples.jsonl", compute)
    assert first == again == [{"problem_id": "p", "sample_idx": 0}] and calls == [1]
    assert rd.info(1, "samples")["seconds"] == 1.0

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        rd.stage_rows(2, "samples", "samples.jsonl", broken)
    assert not rd.done(2, "samples") and not (rd.iter_dir(2) / "samples.jsonl").exists()
    assert rd.stage_json(1, "eval", "eval/metrics.json", lambda: ({"a": 1}, {})) == {"a": 1}
    assert json.loads((rd.iter_dir(1) / "eval" / "metrics.json").read_text()) == {"a": 1}


class FlakyVerifier:
    """Math stand-in: sample 0 passes, others fail, while ``broken`` every item of a marked problem errors."""

    domain = "math"

    def __init__(self, state):
        self.state = state

    def parse_item(self, row, where=""):
        return row

    def verify_batch(self, items):
        self.state["verified"] += [it["id"] for it in items]
        out = []
        for it in items:
            pid, idx = str(it["id"]).rsplit("#", 1)
            if self.state["broken"] and pid in self.state["broken_ids"]:
                out.append(Verdict.errored("sandbox_unavailable", "Cannot connect to the Docker daemon"))
            else:
                out.append(Verdict.passed() if idx == "0" else Verdict.failed("wrong_answer"))
        return out

    def equivalent_batch(self, pairs):
        return [a == b for a, b in pairs]

    def close(self):
        pass


class EchoSampler:
    backend = "fake"

    def generate(self, prompts, params, desc=""):
        from rest_em.sampling.params import Completion

        return [[Completion(f"answer {i}", "stop", 2) for i in range(params.n)] for _ in prompts]

    def close(self):
        pass


def test_outage_stops_the_run_and_the_rerun_reverifies_only_errors(tmp_path, tiny_model_dir, monkeypatch):
    cfg = load_config(REPO / "configs" / "default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path}", "run.name=o", "task.num_train=6",
        "task.num_test=4", "sampling.n=4", "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2", "iterations=1",
        "verifier.max_error_rate=0.2"])
    state = {"broken": False, "broken_ids": set(), "verified": []}
    monkeypatch.setattr("verifiers.registry.get_verifier", lambda domain, **kw: FlakyVerifier(state))
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: EchoSampler())

    def spy_train(base, examples, config, out):
        shutil.copytree(base, out)
        return training.TrainResult(out, 1, 0.5, 0.1, 100.0, len(examples))

    monkeypatch.setattr(training, "train", spy_train)
    # The first E-step: 2 of 6 problems' samples error (33% > 20%): the run stops, nothing is trained.
    from rest_em.tasks import load_task

    train_ids = [p.problem_id for p in load_task(cfg.task).train]
    state["broken"], state["broken_ids"] = True, set(train_ids[:2])
    with pytest.raises(VerifierOutage, match=r"8 of 24 verdicts are errors.*Docker engine"):
        run(cfg)
    rd = RunDir(cfg.run_dir())
    assert rd.done(1, "samples") and not rd.done(1, "verdicts") and not rd.done(1, "filter")
    assert not (rd.iter_dir(1) / "checkpoint").exists()
    kept = rows(rd.iter_dir(1) / "verdicts.jsonl")
    assert sum(v["verdict"] == "error" for v in kept) == 8
    # Fixed: the rerun verifies exactly the 8 error rows again, keeps the other 16, and finishes.
    state["broken"], state["verified"] = False, []
    run(cfg)
    estep_ids = [i for i in state["verified"] if not str(i).startswith("arith-test")]  # eval items aside
    assert sorted(estep_ids) == sorted(f"{pid}#{i}" for pid in train_ids[:2] for i in range(4))
    final = rows(rd.iter_dir(1) / "verdicts.jsonl")
    assert [(v["problem_id"], v["sample_idx"]) for v in final] == [(v["problem_id"], v["sample_idx"]) for v in kept]
    assert not any(v["verdict"] == "error" for v in final)
    assert rd.done(1, "train") and len(rows(rd.iter_dir(1) / "sft.jsonl")) == 6


def test_removed_and_unused_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'run.seed' was removed: it seeded nothing"):
        load_config(None, ["run.seed=1"])
    with pytest.raises(ConfigError, match=r"'eval.num_problems' was removed: .*task.num_test"):
        load_config(None, ["eval.num_problems=5"])
    cfg = load_config(None, ["verifier.url=http://127.0.0.1:9", "verifier.timeout_s=2"])
    assert any("verifier.timeout_s" in w for w in cfg.warnings())
    cfg = load_config(None, ["sampling.backend=hf", "sampling.gpu_memory_utilization=0.5"])
    assert any("gpu_memory_utilization" in w for w in cfg.warnings())
    assert load_config(REPO / "configs" / "default.yaml").warnings() == []
    with pytest.raises(ConfigError, match=r"eval.k_list \[1, 8\]: every k must be between 1 and eval.n=4"):
        load_config(None, ["eval.k_list=[1,8]"])


def test_engine_settings_left_unset_reach_no_backend():
    from rest_em.policy import Samplers

    options = Samplers(load_config(REPO / "configs" / "default.yaml")).engine_options()
    assert "gpu_memory_utilization" not in options and "enforce_eager" not in options
    assert options["batch_size"] == 64 and options["dtype"] == "auto"


def test_task_extraction_reaches_the_code_loaders():
    from rest_em.tasks import load_task

    cfg = load_config(REPO / "configs" / "code-default.yaml", ["task.extraction=last_fenced_block", "task.num_train=2",
                                                               "task.num_test=2"])
    assert {p.extraction for p in load_task(cfg.task).test} == {"last_fenced_block"}
    with pytest.raises(ValueError, match="task.extraction applies to code tasks"):
        load_task(load_config(None, ["task.extraction=last_fenced_block", "task.num_train=2", "task.num_test=2"]).task)
