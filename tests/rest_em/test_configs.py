"""Every shipped config in configs/ runs one ReST-EM iteration end to end on CPU (issue #10).

Only size keys are overridden: the tiny test model (a config that names a hub id keeps it: the tiny
model is saved under that id in an offline Hugging Face cache in a tmp dir, HF_HUB_OFFLINE=1), a
handful of problems, small n and token budgets, the transformers backend where the config asks for
vLLM. Everything else is the file's own: DeepSpeed ZeRO-2, early stopping, few-shot prompts,
transfer sets, the code recipes through the Docker sandbox.

The tiny model is random, so the E-step's sampler is wrapped: sample 0 of each train problem is
replaced by a correct answer (the reference), so that the real verifier passes it and the M-step has
something to train on. All other samples, and every evaluation sample, are the model's own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rest_em.config import load_config
from rest_em.sampling.params import Completion

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
DATA = REPO.parent / "shared" / "data"

# Per config: the size overrides (anything not named here is the file's own setting).
SIZES = ["task.num_train=3", "task.num_test=2", "sampling.n=2", "sampling.max_tokens=12", "eval.n=2",
         "eval.k_list=[1,2]", "eval.max_tokens=12", "verifier.workers=1", "training.num_epochs=1",
         "sampling.batch_size=8"]


def _oracle(problem) -> str | None:
    """A correct response for ``problem``, in the form its verifier expects."""
    if "tests" in problem.payload:
        from rest_em.tasks.code_common import fenced

        return fenced(problem.solution) if problem.solution else None
    ref, fmt = problem.payload["reference"], problem.payload.get("reference_format")
    if fmt == "math_solution":
        from verifiers.math import extract_answer

        ref = extract_answer(ref)
    elif fmt == "gsm8k":
        ref = ref.split("####")[-1].strip()
    return f"The answer is $\\boxed{{{ref}}}$."


class OracleFirst:
    """The real sampler, with sample 0 of every train problem replaced by a correct answer."""

    def __init__(self, inner, oracles: dict[str, str]) -> None:
        self.inner, self.oracles, self.backend = inner, oracles, inner.backend

    def generate(self, prompts, params, desc="sampling"):
        outs = self.inner.generate(prompts, params, desc=desc)
        if not desc.startswith("E-step"):
            return outs
        for prompt, comps in zip(prompts, outs):
            # The problem asked last in the prompt (few-shot prompts carry solved examples first).
            hits = [(prompt.rfind(q), answer) for q, answer in self.oracles.items() if q in prompt]
            if hits:
                comps[0] = Completion(max(hits)[1], "stop", 5)
        return outs

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_runs_one_iteration(name, tiny_model_dir, tmp_path, monkeypatch, request):
    from conftest import save_in_hub_cache

    import rest_em.sampling as sampling
    from rest_em.loop import run
    from rest_em.tasks import load_task

    monkeypatch.chdir(REPO)  # the configs' data paths are relative to the repository (../shared/data)
    path = REPO / "configs" / name
    shipped = load_config(path)
    if shipped.task.name not in ("arithmetic", "code_embedded") and not DATA.exists():
        pytest.skip(f"no shared data at {DATA}")
    code = shipped.task.name in ("code_embedded", "apps", "humaneval", "mbpp")
    if code:
        request.getfixturevalue("sandbox_image")  # the Docker sandbox (skips or fails like every docker test)

    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    overrides = [*SIZES, f"run.output_dir={tmp_path / 'runs'}", "iterations=1"]
    from rest_em.model_source import is_hub_id

    if is_hub_id(shipped.model.path):
        save_in_hub_cache(tiny_model_dir, hf_home, shipped.model.path)  # resolved offline, like a cached download
    else:
        overrides.append(f"model.path={tiny_model_dir}")
    if shipped.sampling.backend in ("vllm", "ray"):
        overrides.append("sampling.backend=hf")  # no GPU here
    if shipped.eval.maj_k:
        overrides.append("eval.maj_k=2")
    if shipped.task.transfer.name:
        overrides.append("task.transfer.num_problems=2")
    if shipped.algorithm == "grpo":  # online RL: a few tiny steps of small groups
        overrides += ["grpo.max_steps=2", "grpo.eval_every=2", "grpo.group_size=2", "grpo.prompts_per_step=2",
                      "grpo.micro_batch_size=2", "sampling.max_tokens=8"]
    if shipped.task.name == "apps":
        # The local APPS sample holds 1 introductory train problem with a solution; its prompt is ~2.5k tokens
        # with the tiny model's 320-token vocabulary (under 1k with a real tokenizer).
        overrides += ["task.num_train=1", "training.max_seq_len=4096"]
    cfg = load_config(path, overrides)

    task = load_task(cfg.task)
    oracles = {p.question: a for p in task.train if (a := _oracle(p)) is not None}
    assert oracles, "no train problem with a known correct answer"
    real = sampling.make_sampler
    monkeypatch.setattr(sampling, "make_sampler", lambda *a, **kw: OracleFirst(real(*a, **kw), oracles))

    t0 = time.monotonic()
    run(cfg)
    print(f"{name}: one iteration in {time.monotonic() - t0:.0f} s")
    root = cfg.run_dir()
    it = root / "iter_01"
    done = json.loads((it / ".done" / "train.json").read_text())
    assert not done["skipped"] and (it / "checkpoint" / "model.safetensors").exists()
    if is_hub_id(shipped.model.path):
        assert done["base_model"].startswith(str(hf_home))  # the local snapshot, not the hub id
    report = json.loads((root / "report.json").read_text())
    assert [e["iteration"] for e in report["iterations"]] == [0, 1]
    if cfg.task.transfer.name:
        assert (it / "transfer" / "metrics.json").exists()
    if cfg.algorithm == "grpo":  # online RL: no E-step files; the step log holds the verified rollouts
        assert (root / "grpo" / "steps.jsonl").exists() and (it / "eval" / "metrics.json").exists()
        return
    verdicts = [json.loads(line)["verdict"] for line in (it / "verdicts.jsonl").read_text().splitlines()]
    assert "pass" in verdicts and "error" not in verdicts
