"""Tracking (training.report_to): the M-step loss and every iteration's evaluation metrics land in one
TensorBoard folder per run, ``runs/<name>/tb/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rest_em.config import load_config
from rest_em.sampling.params import Completion
from rest_em.training import TrainConfig
from rest_em.training.tracking import log_eval_metrics, resolve_report_to, tb_dir

pytest.importorskip("tensorboard")
REPO = Path(__file__).resolve().parents[2]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files under ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(set(v)) for k, v in out.items()}


def test_settings_and_folders(tmp_path):
    assert resolve_report_to("auto") == "tensorboard" and resolve_report_to("none") == "none"
    with pytest.raises(ValueError, match="report_to"):
        TrainConfig(report_to="mlflow")
    assert tb_dir(tmp_path / "runs" / "x" / "iter_02" / "checkpoint") == tmp_path / "runs" / "x" / "tb" / "iter_02-checkpoint"
    log_eval_metrics(tmp_path, 3, "eval", {"greedy_pass@1": 0.5, "pass@4": None, "iteration": 3, "reasons": {}},
                     report_to="none")
    assert not (tmp_path / "tb").exists()


class AnsweringSampler:
    """Right answers for even problems, wrong ones for odd problems: the SFT set is never empty."""

    backend = "fake"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, prompts, params, desc=""):
        out = []
        for j, p in enumerate(prompts):
            a = next(a for q, a in self.answers.items() if q in p)
            out.append([Completion(f"So x = \\boxed{{{a if j % 2 == 0 else 'no'}}}.", "stop", 5) for _ in range(params.n)])
        return out

    def close(self):
        pass


def test_loop_writes_mstep_loss_and_eval_metrics_per_iteration(tiny_model_dir, tmp_path, monkeypatch):
    from rest_em.loop import run
    from rest_em.tasks import load_task

    cfg = load_config(REPO / "configs" / "default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "run.name=tb", "task.num_train=6",
        "task.num_test=4", "sampling.n=2", "eval.n=1", "eval.k_list=[1]", "eval.maj_k=0", "verifier.workers=1",
        "iterations=2", "training.num_epochs=1", "training.report_to=tensorboard"])
    task = load_task(cfg.task)
    answers = {p.question: p.payload["reference"] for p in (*task.train, *task.test)}
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: AnsweringSampler(answers))
    run(cfg)
    tb = cfg.run_dir() / "tb"
    assert sorted(p.name for p in tb.iterdir()) == ["iter_01-checkpoint", "iter_02-checkpoint", "metrics"]
    for t in (1, 2):
        loss = scalars(tb / f"iter_0{t}-checkpoint")
        assert loss.get("train/loss"), f"no M-step loss in {tb}/iter_0{t}-checkpoint: {sorted(loss)}"
    metrics = scalars(tb / "metrics")
    greedy = metrics["eval/greedy_pass@1"]
    assert [step for step, _ in greedy] == [0, 1, 2]  # the base model, then every iteration
    import json

    for step, value in greedy:
        got = json.loads((cfg.run_dir() / f"iter_0{step}" / "eval" / "metrics.json").read_text())["greedy_pass@1"]
        assert value == pytest.approx(got)
