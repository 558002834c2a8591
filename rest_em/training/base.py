"""The M-step's trainer interface, and the in-process SFT trainer behind it.

    trainer = make_trainer(cfg.training)      # rest_em.training.launch: SFTTrainer or LaunchedTrainer
    result = trainer.train(init, rows, output_dir)

A trainer is anything with ``train(init, rows, output_dir) -> TrainResult``: the SFT trainer here (plain or
DeepSpeed, full fine-tune or LoRA), the launched job (``launch.LaunchedTrainer``), RCRL's and DPO's trainers
(``rest_em/algorithms``). ``rest_em.mstep`` runs any of them and frees the memory after each
(:func:`rest_em.training.memory.free_accelerator_memory`). This module sits in ``rest_em.training`` and
imports nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from rest_em.training import TrainConfig, TrainResult


class Trainer(Protocol):
    def train(self, init: Path, rows: Sequence[dict[str, Any]], output_dir: Path) -> TrainResult:
        """Fine-tune ``init`` on ``rows`` into a Hugging Face checkpoint at ``output_dir``."""
        ...


@dataclass(frozen=True)
class SFTTrainer:
    """Supervised fine-tuning in this process (:func:`rest_em.training.train`), plain or DeepSpeed."""

    config: TrainConfig

    def train(self, init: Path, rows: Sequence[dict[str, Any]], output_dir: Path) -> TrainResult:
        from rest_em import training
        from rest_em.training.memory import free_accelerator_memory

        try:
            return training.train(str(init), list(rows), self.config, str(output_dir))
        finally:  # the next sampler in this process needs the GPU memory the trainer held
            free_accelerator_memory()
