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

__all__ = ["TrainConfig", "TrainResult", "train", "TRAIN_BACKENDS"]

TRAIN_BACKENDS = ("plain", "deepspeed")


@dataclass
class TrainConfig:
    """The ``training:`` section of a run config."""

    backend: str = "plain"  # "plain" (HF Trainer, no DeepSpeed) | "deepspeed"
    deepspeed_config: str | None = None  # DeepSpeed JSON path; None -> built from zero_stage
    zero_stage: int = 2
    learning_rate: float = 2e-5
    num_epochs: float = 2.0
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_len: int = 512
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "constant"
    dtype: str = "auto"  # "auto": float32 on CPU, bfloat16 on GPUs that support it
    early_stopping: bool = False  # stop when the loss on a validation split stops improving
    val_fraction: float = 0.1
    early_stopping_patience: int = 1
    evals_per_epoch: int = 1  # validation-loss evaluations per epoch when early_stopping is on
    seed: int = 0
    gradient_checkpointing: bool = False
    # Padding-free batches: each batch's examples concatenated into one row, position ids restarting
    # per example, attention kept within each example (transformers' packed-sequence masks). Same loss.
    packing: bool = True
    # Run the LM head and the loss only where a label is (the completion), not over the prompt tokens.
    # Same loss, less work; plain backend and models whose logits are plain lm_head(hidden) only.
    supervised_logits_only: bool = True

    def __post_init__(self) -> None:
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


def train(base_model_path: str, examples: Sequence[dict], config: TrainConfig, output_dir: str) -> TrainResult:
    """Fine-tune ``base_model_path`` on ``examples`` (``{"prompt", "completion"}`` dicts) into ``output_dir``.

    Raises ``ValueError`` when ``examples`` is empty. The checkpoint (safetensors, config, tokenizer,
    generation config) is written to a temporary sibling directory and renamed into place.
    """
    from rest_em.training.trainer import run_training

    return run_training(base_model_path, examples, config, output_dir)
