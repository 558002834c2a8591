"""``algorithm: grpo``: online RL with TRL's GRPOTrainer, rewarded by the same binary verifiers.

    rest-em iterate --config configs/grpo-default.yaml       # the same driver as ReST-EM (rest_em/loop.py)

    iteration 0: evaluate the base model (the same held-out evaluation as ReST-EM)
    iteration t: ``improve``: train GRPO up to step min(t * grpo.eval_every, grpo.max_steps) -- every step
                 samples grpo.group_size completions for each of grpo.prompts_per_step train prompts,
                 verifies the whole batch at once (rewards 1/0, errors no reward), and takes one optimizer
                 step -- then export the policy to iter_NN/checkpoint; the driver evaluates it and rewrites
                 the report

Settings: ``grpo.*`` holds what is GRPO's own (steps, group size, beta, clipping, loss type, partial
credit, the generation backend, TRL pass-through). The completions are sampled with ``sampling.*``
(``temperature``, ``top_p``, ``top_k``, ``max_tokens``, ``stop``, ``gpu_memory_utilization``), the
optimizer is ``training.*`` (``learning_rate``, ``lr_scheduler``, ``warmup_ratio``, ``weight_decay``,
``gradient_checkpointing``, ``seed``), the precision ``model.dtype``; ``training.lora`` trains a LoRA adapter
(TRL's ``peft_config``), merged into each exported checkpoint. The keys the section used to have
for these still load, with a message naming the new key (``GRPO.renamed_keys``).

The run directory is ReST-EM's (``rest-em report`` and ``rest-em compare`` read it unchanged), plus::

    grpo/trainer/checkpoint-N/   the trainer's last checkpoint (weights, optimizer, scheduler, RNG, trainer state;
                                 with LoRA the adapter instead of the weights)
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from rest_em.algorithms.base import Algorithm
from rest_em.config import Config, ConfigError
from rest_em.fields import opt
from rest_em.online.rewards import RewardBatch, VerifierReward
from rest_em.policy import Policy
from rest_em.problem_sets import ProblemSet
from rest_em.rundir import read_rows
from rest_em.training.memory import free_accelerator_memory
from rest_em.training.publish import publish_files, publish_model
from verifiers.io import write_jsonl_atomic
from verifiers.verdict import FAIL_REASONS

if TYPE_CHECKING:
    from rest_em.problem_sets import ProblemSets

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

@dataclass
class GRPOSection:
    """Online RL with TRL's GRPOTrainer (`algorithm: grpo`, docs/online-rl.md): what is GRPO's own. The sampling
    settings of the completions are `sampling.*`, the optimizer's `training.*`. The defaults are TRL's GRPOConfig
    defaults (TRL 1.16), set explicitly here so a TRL upgrade does not change a run."""

    max_steps: int = opt(100, "optimizer steps in all (each one samples `prompts_per_step` x `group_size` completions)")
    eval_every: int = opt(25, "steps between held-out evaluations: the checkpoint after `t * eval_every` steps is "
                          "iteration `t` of the report (the last one may be shorter)")
    save_every: int | None = opt(None, "steps between trainer checkpoints (with optimizer and trainer state) that a "
                                 "killed run resumes from; `null` = `eval_every`")
    group_size: int = opt(8, "completions per prompt whose rewards are normalised together (TRL "
                          "`num_generations`, at least 2)")
    prompts_per_step: int = opt(1, "prompts per optimizer step (TRL's default batch of 8 completions = 1 group)")
    micro_batch_size: int | None = opt(None, "completions per forward/backward pass (TRL "
                                       "`per_device_train_batch_size`); must divide `prompts_per_step * "
                                       "group_size`; `null` = all of a step's completions at once")
    beta: float = opt(0.0, "KL coefficient against the base model; `0.0` (TRL's default) loads no reference model "
                      "and logs no KL")
    epsilon: float = opt(0.2, "clip range of the token importance ratio (PPO-style clipping)")
    epsilon_high: float | None = opt(None, "upper clip range (DAPO's clip-higher); `null` = `epsilon`")
    loss_type: str = opt("dapo", "TRL loss normalisation: `dapo`, `grpo`, `dr_grpo`, `bnpo`, ...")
    scale_rewards: Literal["group", "batch", "none"] = opt("group", "divide advantages by the reward std of the "
                                                           "`group`, of the `batch`, or `none` (Dr. GRPO)")
    partial_credit: dict[str, float] = opt(
        help="reward of a `fail` verdict by its reason, each in [0, 1), e.g. `{wrong_answer: 0.1}`: an answer the "
             "verifier could read, but not the right one (a format reward, as in open-r1); other fails get 0, "
             "`pass` 1, and `error` never a reward", factory=dict)
    backend: Literal["auto", "vllm", "hf"] = opt("auto", "generation: `vllm` (TRL `use_vllm`, colocated on the "
                                                 "training GPU, `sampling.gpu_memory_utilization` of it, `null` = "
                                                 "TRL's 0.3), `hf` (transformers `generate`), `auto` = vLLM when "
                                                 "installed and a GPU is present, else transformers")
    trl_args: dict[str, Any] = opt(help="further `trl.GRPOConfig` arguments by TRL's names, passed as they are "
                                   "(checked against GRPOConfig)", factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_steps", "eval_every", "prompts_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"grpo.save_every must be >= 1 or null, got {self.save_every}")
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 (advantages compare completions of a group), got "
                             f"{self.group_size}")
        per_step = self.prompts_per_step * self.group_size
        if self.micro_batch_size is not None and (self.micro_batch_size < 1 or per_step % self.micro_batch_size):
            raise ValueError(f"grpo.micro_batch_size={self.micro_batch_size} must divide prompts_per_step * group_size "
                             f"= {per_step}")
        if self.beta < 0 or self.epsilon <= 0:
            raise ValueError("grpo.epsilon must be > 0 and grpo.beta >= 0")
        for reason, value in self.partial_credit.items():
            if reason not in FAIL_REASONS:
                raise ValueError(f"grpo.partial_credit: {reason!r} is not a fail reason; the verifiers' fail reasons "
                                 f"are {', '.join(sorted(FAIL_REASONS))}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"grpo.partial_credit.{reason} must be a number in [0, 1) (a pass is 1), got {value!r}")


# The keys of the GRPO section that had a twin in training.* / sampling.* / model.*, and the twin that replaced them.
RENAMED = {
    "grpo.learning_rate": "training.learning_rate",
    "grpo.lr_scheduler": "training.lr_scheduler",
    "grpo.warmup_ratio": "training.warmup_ratio",
    "grpo.gradient_checkpointing": "training.gradient_checkpointing",
    "grpo.seed": "training.seed",
    "grpo.dtype": "model.dtype",
    "grpo.temperature": "sampling.temperature",
    "grpo.top_p": "sampling.top_p",
    "grpo.top_k": "sampling.top_k",
    "grpo.max_completion_length": "sampling.max_tokens",
    "grpo.vllm_gpu_memory_utilization": "sampling.gpu_memory_utilization",
    # a list of integrations before: [] -> none, [name, ...] -> the first
    "grpo.report_to": ("training.report_to", lambda v: (v[0] if v else "none") if isinstance(v, list) else
                       ("auto" if v is None else v)),
}
_NO_DS = "TRL's GRPOTrainer runs without the project's DeepSpeed set-up"
_IN_PROCESS = "GRPO trains in the driver process (single GPU)"
_NO_VAL = "GRPO trains for grpo.max_steps without a validation split"
# Shared settings GRPO does not read, and why (named in one warning when they are set).
UNUSED = {
    "iterations": "grpo.max_steps and grpo.eval_every set the evaluated checkpoints",
    "filter": "GRPO trains on its own rollouts, there is no filtered set",
    "mstep": "GRPO trains one policy on from the base model",
    "sampling.n": "grpo.group_size completions are sampled per prompt",
    "sampling.seed": "training.seed seeds the trainer's sampling",
    "sampling.seeding": "training.seed seeds the trainer's sampling",
    "training.backend": _NO_DS, "training.deepspeed_config": _NO_DS, "training.zero_stage": _NO_DS,
    "training.num_epochs": "grpo.max_steps sets the length of training",
    "training.per_device_batch_size": "grpo.micro_batch_size is the pass size",
    "training.gradient_accumulation_steps": "grpo.prompts_per_step * grpo.group_size / grpo.micro_batch_size",
    "training.max_seq_len": "sampling.max_tokens bounds the completions; prompts are kept whole",
    "training.early_stopping": _NO_VAL, "training.val_fraction": _NO_VAL,
    "training.early_stopping_patience": _NO_VAL, "training.evals_per_epoch": _NO_VAL,
    "training.num_processes": _IN_PROCESS, "training.num_nodes": _IN_PROCESS, "training.hostfile": _IN_PROCESS,
    "training.master_addr": _IN_PROCESS, "training.master_port": _IN_PROCESS, "training.remote_shell": _IN_PROCESS,
    "training.packing": "TRL pads the completions itself",
    "training.supervised_logits_only": "TRL computes the completions' log-probabilities itself",
    "training.share_prompts": "TRL pads the completions itself",
}


class GRPO(Algorithm):
    """Online RL: each iteration is a segment of GRPO steps, not an E-step and an M-step."""

    name = "grpo"
    source = "Shao et al. 2024, DeepSeekMath (GRPO, arXiv 2402.03300), via TRL's GRPOTrainer"
    Section = GRPOSection
    renamed_keys = RENAMED
    unused_keys = UNUSED
    trains_in_process = True

    def iterations(self) -> int:
        return len(boundaries(self.settings))

    def check(self, sets: "ProblemSets") -> None:
        if len(sets.train.problems) < self.settings.prompts_per_step:
            # TRL drops an incomplete last batch: fewer problems than one step's prompts would train no step.
            raise ConfigError(f"grpo needs at least grpo.prompts_per_step={self.settings.prompts_per_step} train "
                              f"problems; the task has {len(sets.train.problems)} (raise task.num_train or lower "
                              "grpo.prompts_per_step)")
        s = self.cfg.sampling
        if s.temperature <= 0 or not 0.0 < s.top_p <= 1.0:
            raise ConfigError(f"grpo samples its completions with sampling.temperature > 0 and sampling.top_p in (0, 1]; "
                              f"got {s.temperature} and {s.top_p}")

    def improve(self, iteration: int, policy: Policy, sets: "ProblemSets") -> Policy:
        """Train (or resume) up to step ``t * eval_every`` and export that policy to ``iter_NN/checkpoint``."""
        stop_at = boundaries(self.settings)[iteration - 1]
        checkpoint = self.rd.iter_dir(iteration) / "checkpoint"
        work = self.rd.root / "grpo"
        if not self.rd.done(iteration, "train"):
            policy.samplers.close()  # the evaluation's engine would hold the memory the trainer needs
            info = train_segment(self.cfg, self.base, sets.train, work, stop_at)
            export_checkpoint(work / "trainer" / f"checkpoint-{stop_at}", checkpoint, self.base)
            self.rd.mark(iteration, "train", info)
            logger.info("GRPO iteration %d: steps %d-%d, reward %.3f, %.0f s", iteration, info["first_step"], stop_at,
                        info["reward_mean"] if info["reward_mean"] is not None else float("nan"), info["seconds"])
        return Policy(checkpoint, policy.samplers)

    @classmethod
    def report_section(cls, run_dir: Path, data: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
        """The training curves (``reward.png``) and one row per segment, with the reward rule of the run."""
        from rest_em.online.curves import write_training_curves

        text = write_training_curves(run_dir, (config.get("grpo") or {}).get("partial_credit") or {})
        return text.split("\n") if text else []


ALGORITHM = GRPO


def boundaries(section: GRPOSection) -> list[int]:
    """The steps after which the policy is evaluated: eval_every, 2*eval_every, ..., max_steps."""
    out = list(range(section.eval_every, section.max_steps, section.eval_every))
    return out + [section.max_steps]


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint(trainer_dir: Path) -> tuple[Path | None, int]:
    """The trainer's newest complete checkpoint and its step (None, 0 when there is none)."""
    best: tuple[Path | None, int] = (None, 0)
    for p in trainer_dir.glob("checkpoint-*"):
        suffix = p.name[len("checkpoint-"):]
        if suffix.isdigit() and (p / "trainer_state.json").exists() and int(suffix) > best[1]:
            best = (p, int(suffix))
    return best


def export_checkpoint(src: Path, dst: Path, base: Path | None = None) -> None:
    """Copy the policy (weights, config, tokenizer) of a trainer checkpoint to ``dst``, atomically.

    A LoRA run's checkpoint holds the adapter only (``adapter_config.json``): it is put on ``base`` and merged,
    so ``dst`` is a plain checkpoint that every engine loads as any other."""
    if (src / "adapter_config.json").exists():
        if base is None:
            raise RuntimeError(f"{src} holds a LoRA adapter: exporting it needs the base model")
        export_adapter(src, dst, base)
        return
    if not (src / "config.json").exists():
        raise RuntimeError(f"{src}: the trainer checkpoint is missing (expected after the segment ended)")
    publish_files(src, dst, skip=lambda p: p.name in TRAINER_STATE_FILES or p.name.startswith("rng_state"))


def export_adapter(src: Path, dst: Path, base: Path) -> None:
    """The trainer checkpoint's LoRA adapter on ``base``, merged, with the checkpoint's tokenizer, to ``dst``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    model = PeftModel.from_pretrained(model, str(src))
    tokenizer = AutoTokenizer.from_pretrained(str(src) if (src / "tokenizer_config.json").exists() else str(base))
    publish_model(model, tokenizer, dst)
    del model
    free_memory()


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
        raise ConfigError("model.dtype=float16 needs a GPU to train GRPO; use float32 or bfloat16 on CPU")
    from rest_em.tokens import resolve_dtype_name

    # auto: bf16 where the GPU or the CPU computes in it natively, else fp16 (GPU) / fp32 (CPU)
    dtype = resolve_dtype_name(dtype, "cuda" if cuda else "cpu", "model.dtype")
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16", "use_cpu": not cuda}


def report_to(choice: str) -> list[str] | str:
    """TRL's ``report_to`` for ``training.report_to`` (``auto`` = TensorBoard when installed). Metrics always go to
    ``grpo/steps.jsonl`` too."""
    if choice != "auto":
        return "none" if choice == "none" else [choice]
    installed = importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX")
    return ["tensorboard"] if installed else "none"


def grpo_args(cfg: Config, output_dir: Path, stop: tuple[str, ...] = ()) -> Any:
    """The ``trl.GRPOConfig`` of a run: every recipe setting explicit (``grpo.*``, the completions' ``sampling.*``,
    the optimizer's ``training.*``, ``model.dtype``), then ``grpo.trl_args``."""
    import dataclasses

    from trl import GRPOConfig

    section, sampling, training = cfg.grpo, cfg.sampling, cfg.training
    per_step = section.prompts_per_step * section.group_size
    micro = section.micro_batch_size or per_step
    vllm = use_vllm(section)
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=section.max_steps, num_generations=section.group_size,
        per_device_train_batch_size=micro, gradient_accumulation_steps=per_step // micro,
        learning_rate=training.learning_rate, lr_scheduler_type=training.lr_scheduler,
        warmup_steps=round(training.warmup_ratio * section.max_steps), weight_decay=training.weight_decay,
        beta=section.beta, epsilon=section.epsilon, loss_type=section.loss_type, scale_rewards=section.scale_rewards,
        max_completion_length=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
        top_k=sampling.top_k, use_vllm=vllm,
        seed=training.seed, data_seed=training.seed, logging_steps=1, save_strategy="steps",
        save_steps=section.save_every or section.eval_every, save_total_limit=1, report_to=report_to(training.report_to),
        model_init_kwargs={"dtype": "float32"}, remove_unused_columns=False, dataloader_num_workers=0,
        **precision_flags(cfg.model.dtype),
    )
    if section.epsilon_high is not None:
        kwargs["epsilon_high"] = section.epsilon_high
    stops = list(dict.fromkeys([*sampling.stop, *stop]))
    if vllm:
        memory = sampling.gpu_memory_utilization if sampling.gpu_memory_utilization is not None else 0.3
        kwargs.update(vllm_mode="colocate", vllm_gpu_memory_utilization=memory)
        if stops:
            kwargs["generation_kwargs"] = {"stop": stops}
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    # transformers 5.20+ renamed gradient_checkpointing to activation_checkpointing (the old name deprecated).
    kwargs["activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"] = (
        training.gradient_checkpointing)
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
    args = grpo_args(cfg, trainer_dir, train.stop)
    from rest_em.training.lora import peft_lora_config

    # With training.lora TRL wraps the model in the adapter; its checkpoints hold the adapter, merged at export.
    peft_config = peft_lora_config(cfg.training.lora) if cfg.training.lora.enabled else None
    return GRPOTrainer(model=str(base), reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, callbacks=[Monitor()], peft_config=peft_config)
