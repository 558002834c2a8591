"""M-step: supervised fine-tuning of the BASE model on verified-correct solutions.

    from rest_em.training import TrainConfig, train
    result = train(base_model_path, [{"prompt": p, "completion": c}, ...], TrainConfig(), "runs/x/iter_01/checkpoint")

The loss covers completion tokens only (prompt tokens and padding are labelled -100) and an EOS token is
appended to each completion. ``train`` always loads ``base_model_path`` afresh: ReST-EM restarts every
iteration from the base model, never from the previous iterate. Heavy imports (torch, transformers,
deepspeed) happen inside :func:`train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rest_em.fields import opt

__all__ = ["LoRAConfig", "TrainConfig", "TrainResult", "train", "TRAIN_BACKENDS"]

TRAIN_BACKENDS = ("plain", "deepspeed")
LAUNCHERS = ("none", "torchrun", "accelerate", "deepspeed", "srun")
REPORT_TO = ("auto", "tensorboard", "wandb", "none")


@dataclass
class LoRAConfig:
    """The ``training.lora:`` section: LoRA adapters through peft instead of a full fine-tune."""

    r: int | None = opt(None, "adapter rank; `null` = full fine-tune (no adapter)")
    alpha: float | None = opt(None, "LoRA scaling alpha; `null` = 2 x r")
    dropout: float = opt(0.0, "dropout on the adapter's input")
    target_modules: list[str] | None = opt(None, "module names that get adapters; `null` = every linear layer of the "
                                           "decoder (attention and MLP projections, not the LM head)")

    def __post_init__(self) -> None:
        if self.r is not None and self.r < 1:
            raise ValueError(f"training.lora.r must be >= 1 or null, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"training.lora.dropout must be in [0, 1), got {self.dropout}")

    @property
    def enabled(self) -> bool:
        return self.r is not None


@dataclass
class TrainConfig:
    """The ``training:`` section of a run config."""

    backend: str = opt("plain", "`plain` (Hugging Face Trainer) or `deepspeed`")
    deepspeed_config: str | None = opt(None, "DeepSpeed JSON (e.g. `configs/deepspeed/zero2.json`); `null` = built "
                                       "from `zero_stage`")
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage (0-3) when no `deepspeed_config` is given")
    learning_rate: float = opt(2e-5, "peak learning rate")
    num_epochs: float = opt(2.0, "passes over the SFT set")
    per_device_batch_size: int = opt(8, "rows per device per step")
    gradient_accumulation_steps: int = opt(1, "steps accumulated per optimizer update")
    max_seq_len: int = opt(512, "prompt + solution tokens; longer rows are cut, rows whose prompt fills it dropped")
    warmup_ratio: float = opt(0.0, "share of steps spent warming up the learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    lr_scheduler: str = opt("constant", "a transformers scheduler name (`constant`, `cosine`, `linear`, ...)")
    dtype: str = opt("auto", "`auto` = bfloat16 mixed precision on GPUs and CPUs that have bfloat16 "
                     "instructions (AVX512-BF16, AMX), else float32 on CPU (float16 on older GPUs); `float32`, "
                     "`bfloat16` (mixed precision), `float16` (GPUs). In a run config it is `model.dtype`",
                     derived="model.dtype")
    early_stopping: bool = opt(False, "stop when the loss on a validation split stops improving (paper)")
    val_fraction: float = opt(0.1, "share of problems held out for early stopping")
    early_stopping_patience: int = opt(1, "evaluations without improvement before stopping")
    evals_per_epoch: int = opt(1, "validation-loss evaluations per epoch when early stopping is on")
    seed: int = opt(0, "training seed (data order, dropout)")
    gradient_checkpointing: bool = opt(False, "recompute activations to save memory")
    launcher: str = opt("none", "`none` = train in the driver process (CPU default); `torchrun`, `accelerate`, "
                        "`deepspeed` = the M-step as a launched job of `num_processes` x `num_nodes` processes that "
                        "exits when done, freeing its GPU memory; `srun` = torchrun once per node of the Slurm "
                        "allocation through `srun` (docs/scaling.md)")
    num_processes: int | Literal["auto"] = opt(1, "launched M-step: processes (GPUs) per node (`auto` = every visible "
                                               "GPU, 1 without GPUs)")
    num_nodes: int = opt(1, "launched M-step: nodes")
    hostfile: str | None = opt(None, "launched M-step on several nodes: hosts, one per line (`node1 slots=8`, this "
                               "node first); deepspeed reads it itself, torchrun/accelerate start node i>0 through "
                               "`remote_shell`")
    master_addr: str | None = opt(None, "rendezvous address (`null` = 127.0.0.1 on one node, the first host of the "
                                  "hostfile on several)")
    master_port: int | None = opt(None, "rendezvous port (`null` = a free port on one node, 29500 on several)")
    remote_shell: str = opt("ssh", "how torchrun/accelerate nodes i>0 are started: `<remote_shell> <host> <command>`")
    packing: bool = opt(True, "padding-free batches: a batch's rows concatenated into one, position ids restarting per "
                        "row and attention kept within each row (transformers' packed-sequence masks); the same loss")
    share_prompts: bool | None = opt(None, "prompt-shared packing: each prompt once in a packed row, followed by all "
                                     "its completions, each seeing the prompt and itself only (a 4D attention mask; "
                                     "position ids restart after the prompt); a batch holds whole prompt groups of about "
                                     "`per_device_batch_size` rows. The same loss with fewer tokens. `null` = on where "
                                     "the attention implementation takes the mask (sdpa, eager), else position-id "
                                     "packing (flash-attention varlen kernels); off with early stopping")
    lora: LoRAConfig = opt(help="LoRA adapters (peft): `r: null` = full fine-tune", factory=LoRAConfig)
    report_to: str = opt("auto", "training curves: `tensorboard` (into `<run>/tb/`), `wandb`, `none`; `auto` = "
                         "tensorboard when installed, else none")
    supervised_logits_only: bool = opt(True, "run the LM head and the loss only where a label is (the completion); the "
                                       "same loss, less work (plain backend, models whose logits are lm_head(hidden))")

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # a TrainConfig read back from JSON (the launched worker)
            self.lora = LoRAConfig(**self.lora)
        if self.report_to not in REPORT_TO:
            raise ValueError(f"training.report_to must be one of {REPORT_TO}, got {self.report_to!r}")
        if self.backend not in TRAIN_BACKENDS:
            raise ValueError(f"training.backend must be one of {TRAIN_BACKENDS}, got {self.backend!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"training.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"training.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"training.val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_seq_len", "early_stopping_patience", "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"training.launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.num_processes != "auto" and (isinstance(self.num_processes, bool) or not isinstance(self.num_processes, int)
                                             or self.num_processes < 1):
            raise ValueError(f"training.num_processes must be >= 1 or `auto`, got {self.num_processes!r}")
        if self.num_nodes < 1:
            raise ValueError("training.num_nodes must be >= 1")
        if self.launcher == "none" and (self.num_processes not in (1, "auto") or self.num_nodes > 1):
            raise ValueError("training.num_processes / num_nodes > 1 need a training.launcher (torchrun, accelerate, "
                             "deepspeed); launcher none trains in the driver process")
        if self.num_epochs <= 0:
            raise ValueError(f"training.num_epochs must be > 0, got {self.num_epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ValueError(f"training.learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class TrainResult:
    checkpoint_dir: str
    steps: int
    train_loss: float | None
    seconds: float
    tokens_per_s: float  # supervised + prompt tokens processed per second of training
    num_examples: int
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, train loss) as logged
    tokens_trained: int | None = None  # prompt + completion tokens of the forward passes, times the epochs run
    supervised_tokens_trained: int | None = None  # of those, the tokens that carry the loss
    supervised_tokens_per_s: float = 0.0  # completion (loss-carrying) tokens per second of training
    train_seconds: float = 0.0  # the optimisation loop alone (no loading, no saving)
    tokens_processed: int = 0  # tokens the model read per epoch (prompt-shared: each prompt once per group)


def train(base_model_path: str, examples: Sequence[dict], config: TrainConfig, output_dir: str,
          trainable_tokens: Sequence[str] = ()) -> TrainResult:
    """Fine-tune ``base_model_path`` on ``examples`` (``{"prompt", "completion"}`` dicts) into ``output_dir``.

    Raises ``ValueError`` when ``examples`` is empty. The checkpoint (safetensors, config, tokenizer,
    generation config) is written to a temporary sibling directory and renamed into place.
    ``trainable_tokens``: tokens whose embedding rows train in full under LoRA (RCRL's reward tokens).
    """
    from rest_em.training.trainer import run_training

    return run_training(base_model_path, examples, config, output_dir, trainable_tokens)
