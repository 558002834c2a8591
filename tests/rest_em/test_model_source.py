"""Base models by hub id (issue #10): resolved once to a local snapshot that every stage uses; offline
with no cached copy, the run stops with a clear message before anything is sampled. Also the APPS
recipe whose hub dataset cannot load stops instead of training on the 8-problem local fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rest_em.config import ConfigError, load_config
from rest_em.model_source import ModelNotFound, is_hub_id, resolve_model
from rest_em.sampling.params import Completion

REPO = Path(__file__).resolve().parents[2]


def test_hub_id_resolves_to_the_cached_snapshot(offline_hub):
    path = resolve_model(offline_hub["repo_id"])
    assert path == offline_hub["snapshot"] and (path / "config.json").exists()
    cfg = load_config(REPO / "configs" / "default.yaml", [f"model.path={offline_hub['repo_id']}"])
    assert cfg.model_path() == offline_hub["snapshot"]
    assert is_hub_id("Qwen/Qwen2.5-1.5B") and not is_hub_id("/models/x") and not is_hub_id("~/m") and not is_hub_id("default")


def test_offline_without_a_cached_copy_is_a_clear_error(offline_hub):
    with pytest.raises(ModelNotFound, match=r"offline \(HF_HUB_OFFLINE=1\) and no copy in the hub cache .*model.path"):
        resolve_model("rest-em-test/not-cached")


class GoodSampler:
    """Answers every prompt with the right ``\\boxed{}`` answer (the tiny model is random)."""

    backend = "fake"

    def __init__(self, opened: list, path: str, answers: dict[str, str]) -> None:
        self.answers = answers
        opened.append(path)

    def generate(self, prompts, params, desc=""):
        return [[Completion(f"x = \\boxed{{{next(a for q, a in self.answers.items() if q in p)}}}", "stop", 5)] * params.n
                for p in prompts]

    def close(self):
        pass


def _run_with(model_path: str, tmp_path, monkeypatch):
    from rest_em.loop import run
    from rest_em.tasks import load_task

    cfg = load_config(REPO / "configs" / "default.yaml", [
        f"model.path={model_path}", f"run.output_dir={tmp_path / 'runs'}", "run.name=hub", "task.num_train=3",
        "task.num_test=2", "sampling.n=1", "eval.n=1", "eval.k_list=[1]", "eval.maj_k=1", "verifier.workers=1",
        "iterations=1", "training.num_epochs=1", "training.max_seq_len=96"])
    answers = {p.question: p.payload["reference"] for p in (*load_task(cfg.task).train, *load_task(cfg.task).test)}
    opened: list = []
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: GoodSampler(opened, path, answers))
    return cfg, opened, run


def test_a_hub_id_base_model_trains_from_its_local_snapshot(offline_hub, tmp_path, monkeypatch):
    """Before: model.path=owner/name reached the M-step as Path('owner/name') and the trainer's is_dir() check
    crashed the first M-step (configs/math.yaml with Qwen/Qwen2.5-1.5B)."""
    cfg, opened, run = _run_with(offline_hub["repo_id"], tmp_path, monkeypatch)
    run(cfg)
    snapshot = str(offline_hub["snapshot"])
    ckpt = cfg.run_dir() / "iter_01" / "checkpoint"
    assert opened == [snapshot, str(ckpt)]  # the E-step and the evaluation sample the same local snapshot
    from rest_em.rundir import RunDir

    assert RunDir(cfg.run_dir()).info(1, "train")["base_model"] == snapshot
    assert (ckpt / "model.safetensors").exists()


def test_offline_hub_id_without_cache_stops_before_sampling(offline_hub, tmp_path, monkeypatch):
    cfg, opened, run = _run_with("rest-em-test/absent", tmp_path, monkeypatch)
    with pytest.raises(ModelNotFound, match="rest-em-test/absent"):
        run(cfg)
    assert opened == [] and not (cfg.run_dir() / "iter_00" / "eval").exists()


def test_apps_recipe_stops_when_the_hub_dataset_falls_back_to_the_local_sample(monkeypatch):
    """Before: configs/apps.yaml (APPS introductory, every problem) warned and ran on 5 train / 3 test local
    problems, because codeparrot/apps is a loading-script dataset that datasets >= 4 refuses."""
    from rest_em.tasks import apps, load_task

    if not (REPO.parent / "shared" / "data" / "apps" / "apps_10.jsonl").exists():
        pytest.skip("no shared APPS data")
    monkeypatch.chdir(REPO)

    def refuse(name, split):
        raise RuntimeError("Dataset scripts are no longer supported, but found apps.py")

    monkeypatch.setattr(apps, "read_hub", refuse)
    cfg = load_config(REPO / "configs" / "apps.yaml")
    with pytest.raises(ConfigError) as err:
        load_task(cfg.task)
    msg = str(err.value)
    assert "loading-script dataset" in msg and "datasets` >= 4" in msg  # the cause
    assert "task.train_path=" in msg and "task.hub_name=null" in msg  # the fix
    # Asking for what the local files hold is a choice, and runs.
    small = load_config(REPO / "configs" / "apps.yaml", ["task.num_train=1", "task.num_test=2"])
    task = load_task(small.task)
    assert len(task.train) == 1 and len(task.test) == 2
