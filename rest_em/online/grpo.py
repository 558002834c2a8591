"""``algorithm: grpo``: online RL with TRL's GRPOTrainer, rewarded by the same binary verifiers.

    report = run(cfg)        # rest-em iterate --config configs/grpo-default.yaml

    iteration 0: evaluate the base model (the same held-out evaluation as ReST-EM)
    iteration t: train GRPO up to step min(t * grpo.eval_every, grpo.max_steps) -- every step samples
                 grpo.group_size completions for each of grpo.prompts_per_step train prompts, verifies
                 the whole batch at once (rewards 1/0, errors no reward), and takes one optimizer step --
                 then export the policy to iter_NN/checkpoint and evaluate it; rewrite the report

The run directory is ReST-EM's (``rest-em report`` and ``rest-em compare`` read it unchanged), plus::

    grpo/trainer/checkpoint-N/   the trainer's last checkpoint (weights, optimizer, scheduler, RNG, trainer state)
    grpo/steps.jsonl             one row per step: reward mean/std, share of groups with zero reward std,
                                 KL (beta > 0), completion length, verdict counts, reward and step seconds
    grpo/rollouts.jsonl          every verified completion: step, problem_id, sample_idx, text, verdict, reward
    reward.png                   the training curves (linked from report.md)

Resuming: a finished iteration (its ``train`` marker) is never retrained; otherwise training resumes
from the last trainer checkpoint with its optimizer and trainer state (``resume_from_checkpoint``), and
step rows written after that checkpoint are dropped, so no step is counted twice.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from rest_em.config import Config, ConfigError, GRPOSection
from rest_em.evaluation import evaluate
from rest_em.online.rewards import RewardBatch, VerifierReward
from rest_em.policy import Policy, Samplers
from rest_em.problem_sets import ProblemSet, build_problem_sets
from rest_em.report import write_report
from rest_em.rundir import RunDir, read_rows
from rest_em.training.memory import free_accelerator_memory
from rest_em.training.publish import publish_files
from verifiers.io import write_jsonl_atomic

logger = logging.getLogger(__name__)

# Files of a trainer checkpoint that are trainer state, not part of the exported policy.
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "scaler.pt")
# TRL's logged metric -> the steps.jsonl column (TRL names differ a little across versions).
METRICS = {
    "reward": ("reward",),
    "reward_std": ("reward_std",),
    "frac_reward_zero_std": ("frac_reward_zero_std",),
    "kl": ("kl",),
    "completion_length": ("completions/mean_length", "completion_length"),
    "clip_ratio": ("clip_ratio/region_mean", "clip_ratio"),
    "entropy": ("entropy",),
    "loss": ("loss",),
    "grad_norm": ("grad_norm",),
    "learning_rate": ("learning_rate",),
}


def boundaries(section: GRPOSection) -> list[int]:
    """The steps after which the policy is evaluated: eval_every, 2*eval_every, ..., max_steps."""
    out = list(range(section.eval_every, section.max_steps, section.eval_every))
    return out + [section.max_steps]


def run(cfg: Config) -> Path:
    """Run (or resume) GRPO with held-out evaluations every ``grpo.eval_every`` steps; returns report.md."""
    if cfg.algorithm != "grpo":
        raise ConfigError(f"rest_em.online.grpo runs algorithm grpo, not {cfg.algorithm!r}")
    for warning in cfg.warnings():
        logger.warning("config: %s", warning)
    rd = RunDir.open(cfg)
    base = cfg.model_path()
    sets, samplers = build_problem_sets(cfg, base), Samplers(cfg)
    if len(sets.train.problems) < cfg.grpo.prompts_per_step:
        # TRL drops an incomplete last batch: fewer problems than one step's prompts would train no step.
        raise ConfigError(f"grpo needs at least grpo.prompts_per_step={cfg.grpo.prompts_per_step} train problems; "
                          f"the task has {len(sets.train.problems)} (raise task.num_train or lower grpo.prompts_per_step)")
    work = rd.root / "grpo"

    def evaluate_all(t: int, policy: Policy) -> None:
        for test in sets.evals:
            evaluate(rd, t, policy, test, cfg.eval, cfg.verifier)
        write_report(rd.root)

    try:
        evaluate_all(0, Policy(base, samplers))
        for t, stop_at in enumerate(boundaries(cfg.grpo), start=1):
            checkpoint = rd.iter_dir(t) / "checkpoint"
            if not rd.done(t, "train"):
                samplers.close()  # the evaluation's engine would hold the memory the trainer needs
                info = train_segment(cfg, base, sets.train, work, stop_at)
                export_checkpoint(work / "trainer" / f"checkpoint-{stop_at}", checkpoint)
                rd.mark(t, "train", info)
                logger.info("GRPO iteration %d: steps %d-%d, reward %.3f, %.0f s", t, info["first_step"], stop_at,
                            info["reward_mean"] if info["reward_mean"] is not None else float("nan"), info["seconds"])
            evaluate_all(t, Policy(checkpoint, samplers))
    finally:
        samplers.close()
        sets.close()
    return rd.root / "report.md"


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint(trainer_dir: Path) -> tuple[Path | None, int]:
    """The trainer's newest complete checkpoint and its step (None, 0 when there is none)."""
    best: tuple[Path | None, int] = (None, 0)
    for p in trainer_dir.glob("checkpoint-*"):
        suffix = p.name[len("checkpoint-"):]
        if suffix.isdigit() and (p / "trainer_state.json").exists() and int(suffix) > best[1]:
            best = (p, int(suffix))
    return best


def export_checkpoint(src: Path, dst: Path) -> None:
    """Copy the policy (weights, config, tokenizer) of a trainer checkpoint to ``dst``, atomically."""
    if not (src / "config.json").exists():
        raise RuntimeError(f"{src}: the trainer checkpoint is missing (expected after the segment ended)")
    publish_files(src, dst, skip=lambda p: p.name in TRAINER_STATE_FILES or p.name.startswith("rng_state"))


# --------------------------------------------------------------------------- the step log


class StepLog:
    """``grpo/steps.jsonl`` and ``grpo/rollouts.jsonl``, appended per step; cut back to a checkpoint on resume."""

    def __init__(self, work: Path) -> None:
        self.steps_path, self.rollouts_path = work / "steps.jsonl", work / "rollouts.jsonl"

    def truncate_after(self, step: int) -> None:
        """Drop rows of steps after ``step`` (written by a run killed after its last checkpoint)."""
        for path in (self.steps_path, self.rollouts_path):
            if path.exists():
                rows = read_rows(path)
                keep = [r for r in rows if r.get("step", 0) <= step]
                if len(keep) != len(rows):
                    logger.info("%s: dropping %d rows after step %d (the checkpoint resumed from)", path,
                                len(rows) - len(keep), step)
                    write_jsonl_atomic(path, keep)

    def append(self, step_row: dict[str, Any], batches: list[RewardBatch]) -> None:
        self.steps_path.parent.mkdir(parents=True, exist_ok=True)
        with self.rollouts_path.open("a", encoding="utf-8") as f:
            for b in batches:
                for r in b.rows:
                    f.write(json.dumps({"step": step_row["step"], **r}) + "\n")
        with self.steps_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(step_row) + "\n")

    def rows(self, first: int = 1, last: int | None = None) -> list[dict[str, Any]]:
        if not self.steps_path.exists():
            return []
        return [r for r in read_rows(self.steps_path) if r["step"] >= first and (last is None or r["step"] <= last)]


def step_row(step: int, logs: dict[str, Any], batches: list[RewardBatch], step_s: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step}
    for name, keys in METRICS.items():
        row[name] = next((logs[k] for k in keys if k in logs), None)
    counts = {o: sum(b.counts.get(o, 0) for b in batches) for o in ("pass", "fail", "error")}
    total = sum(counts.values())
    row.update({"verdicts": counts, "error_rate": counts["error"] / total if total else None,
                "reward_s": sum(b.seconds for b in batches), "step_s": step_s})
    return row


def segment_info(rows: list[dict[str, Any]], first: int, last: int, seconds: float) -> dict[str, Any]:
    """The ``train`` marker of one iteration: what its steps did and cost."""

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    reward_s = sum(r["reward_s"] for r in rows)
    step_s = sum(r["step_s"] or 0.0 for r in rows)
    verdicts = {o: sum(r["verdicts"][o] for r in rows) for o in ("pass", "fail", "error")}
    return {"skipped": False, "algorithm": "grpo", "first_step": first, "steps": last, "steps_logged": len(rows),
            "seconds": seconds, "reward_mean": mean("reward"), "reward_std": mean("reward_std"),
            "frac_reward_zero_std": mean("frac_reward_zero_std"), "kl": mean("kl"),
            "completion_length": mean("completion_length"), "verdicts": verdicts, "reward_s": reward_s,
            "step_s": step_s, "reward_share": reward_s / step_s if step_s else None}


# --------------------------------------------------------------------------- training


def use_vllm(section: GRPOSection) -> bool:
    if section.backend == "hf":
        return False
    has_vllm = importlib.util.find_spec("vllm") is not None
    if section.backend == "vllm":
        if not has_vllm:
            raise ConfigError("grpo.backend is vllm but vLLM is not installed (pip install vllm); or use "
                              "grpo.backend=hf")
        return True
    import torch

    return has_vllm and torch.cuda.is_available()


def precision_flags(dtype: str) -> dict[str, bool]:
    """Mixed precision (float32 master weights); ``use_cpu`` so bfloat16 autocast is allowed on CPUs."""
    import torch

    cuda = torch.cuda.is_available()
    if dtype == "float16" and not cuda:
        raise ConfigError("grpo.dtype=float16 needs a GPU; use float32 or bfloat16 on CPU")
    from rest_em.tokens import resolve_dtype_name

    # auto: bf16 where the GPU or the CPU computes in it natively, else fp16 (GPU) / fp32 (CPU)
    dtype = resolve_dtype_name(dtype, "cuda" if cuda else "cpu", "grpo.dtype")
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16", "use_cpu": not cuda}


def report_to(section: GRPOSection) -> list[str] | str:
    if section.report_to is not None:
        return list(section.report_to) or "none"
    installed = importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX")
    return ["tensorboard"] if installed else "none"


def grpo_args(section: GRPOSection, output_dir: Path, stop: tuple[str, ...] = ()) -> Any:
    """The ``trl.GRPOConfig`` of a run: every recipe setting explicit, then ``grpo.trl_args``."""
    import dataclasses

    from trl import GRPOConfig

    per_step = section.prompts_per_step * section.group_size
    micro = section.micro_batch_size or per_step
    vllm = use_vllm(section)
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=section.max_steps, num_generations=section.group_size,
        per_device_train_batch_size=micro, gradient_accumulation_steps=per_step // micro,
        learning_rate=section.learning_rate, lr_scheduler_type=section.lr_scheduler,
        warmup_steps=round(section.warmup_ratio * section.max_steps),
        beta=section.beta, epsilon=section.epsilon, loss_type=section.loss_type, scale_rewards=section.scale_rewards,
        max_completion_length=section.max_completion_length, temperature=section.temperature, top_p=section.top_p,
        top_k=section.top_k, use_vllm=vllm,
        seed=section.seed, data_seed=section.seed, logging_steps=1, save_strategy="steps",
        save_steps=section.save_every or section.eval_every, save_total_limit=1, report_to=report_to(section),
        model_init_kwargs={"dtype": "float32"}, remove_unused_columns=False, dataloader_num_workers=0,
        **precision_flags(section.dtype),
    )
    if section.epsilon_high is not None:
        kwargs["epsilon_high"] = section.epsilon_high
    if vllm:
        kwargs.update(vllm_mode="colocate", vllm_gpu_memory_utilization=section.vllm_gpu_memory_utilization)
        if stop:
            kwargs["generation_kwargs"] = {"stop": list(stop)}
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    # transformers 5.20+ renamed gradient_checkpointing to activation_checkpointing (the old name deprecated).
    kwargs["activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"] = (
        section.gradient_checkpointing)
    unknown = sorted(set(section.trl_args) - known)
    if unknown:
        raise ConfigError(f"grpo.trl_args: {', '.join(unknown)} are not trl.GRPOConfig arguments")
    kwargs.update(section.trl_args)
    return GRPOConfig(**kwargs)


def train_segment(cfg: Config, base: Path, train: ProblemSet, work: Path, stop_at: int) -> dict[str, Any]:
    """Train (or resume) GRPO up to step ``stop_at``; leaves ``grpo/trainer/checkpoint-<stop_at>``."""
    trainer_dir = work / "trainer"
    resume, resumed_step = last_checkpoint(trainer_dir)
    log = StepLog(work)
    log.truncate_after(resumed_step)
    start = time.monotonic()
    if resumed_step > stop_at:
        raise RuntimeError(f"{resume} is past step {stop_at} but iteration {stop_at} was never exported: "
                           f"remove {trainer_dir} to retrain")
    if resumed_step < stop_at:
        if resume is not None:
            logger.info("GRPO: resuming from %s (step %d)", resume, resumed_step)
        trainer = build_trainer(cfg, base, train, trainer_dir, log, stop_at)
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        finally:
            del trainer
            free_memory()
    first = resumed_step + 1
    return segment_info(log.rows(first, stop_at), first, stop_at, time.monotonic() - start)


def free_memory() -> None:
    free_accelerator_memory()


def build_trainer(cfg: Config, base: Path, train: ProblemSet, trainer_dir: Path, log: StepLog, stop_at: int) -> Any:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    reward = VerifierReward(train, cfg.verifier.max_error_rate, partial_credit=cfg.grpo.partial_credit)

    class Monitor(TrainerCallback):
        """Names the step the reward sees, times steps, writes the step log, stops at the segment's end."""

        def __init__(self) -> None:
            self.started: float | None = None
            self.step_s: dict[int, float] = {}

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
            if self.started is None:  # once per optimizer step (gradient accumulation calls it per micro-batch)
                self.started = time.monotonic()
            reward.step = state.global_step + 1

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.started is not None:
                self.step_s[state.global_step] = time.monotonic() - self.started
            self.started = None
            if state.global_step >= stop_at:
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = logs or {}
            if "train_runtime" in logs or not any(k in logs for k in ("loss", "reward")):
                return  # the end-of-training summary, not a step
            batches = reward.drain()
            log.append(step_row(state.global_step, logs, batches, self.step_s.pop(state.global_step, None)), batches)

    tokenizer = AutoTokenizer.from_pretrained(str(base), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [{"prompt": train.prompts[p.problem_id], "problem_id": p.problem_id} for p in train.problems]
    args = grpo_args(cfg.grpo, trainer_dir, train.stop)
    return GRPOTrainer(model=str(base), reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, callbacks=[Monitor()])
