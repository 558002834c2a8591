"""The M-step: fine-tune a policy's starting point on the SFT set, behind one interface.

    trainer = SFTTrainer(cfg.training)
    step = m_step(rd, iteration, base, sft, trainer, free_memory=samplers.make_room_for_training)
    policy = base if step.skipped else step.checkpoint

ReST-EM restarts every M-step from the base model, never from the previous iterate: the loop passes
the base model as ``init``. When the E-step found no correct solution there is nothing to train on:
the M-step is recorded as skipped (``step.skipped``), and the caller decides what the policy of that
iteration is (ReST-EM: the base model).

A trainer is anything with ``train(init, rows, output_dir) -> TrainResult`` (``rest_em.training.base.Trainer``):
the in-process SFT trainer, other algorithms' M-steps and a launched multi-process job. Whatever the trainer,
``m_step`` frees the memory it held once it returns or fails (the next sampling engine sizes itself from it).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rest_em.rundir import RunDir
from rest_em.training.base import SFTTrainer, Trainer
from rest_em.training.memory import free_accelerator_memory

__all__ = ["MStepResult", "SFTTrainer", "Trainer", "m_step"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MStepResult:
    checkpoint: Path | None  # None when there was nothing to train on
    skipped: bool
    reason: str | None = None


def m_step(
    rd: RunDir, iteration: int, init: Path, rows: Sequence[dict[str, Any]], trainer: Trainer,
    free_memory: Callable[[], None] = lambda: None, stage: str = "train", dirname: str = "checkpoint",
    empty_reason: str = "no correct samples",
) -> MStepResult:
    """Train ``init`` on ``rows`` into ``iter_NN/<dirname>`` (resumable stage ``stage``).

    ``free_memory`` is called just before training starts (the loop closes a GPU sampler, whose engine
    would otherwise hold the memory the trainer needs). ``stage`` and ``dirname`` name a second
    training stage of one iteration (DPO's SFT start, ``sft_train`` into ``sft_checkpoint``).
    """
    checkpoint = rd.iter_dir(iteration) / dirname
    info = rd.info(iteration, stage)
    if info is not None:
        return MStepResult(None, True, info.get("reason")) if info.get("skipped") else MStepResult(checkpoint, False)
    if not rows:
        reason = empty_reason
        logger.warning("iteration %d: %s; nothing to train on", iteration,
                       "the E-step found no correct solution" if reason == "no correct samples" else reason)
        rd.mark(iteration, stage, {"skipped": True, "reason": reason, "seconds": 0.0, "base_model": str(init)})
        return MStepResult(None, True, reason)
    free_memory()
    if checkpoint.exists():  # left by a run killed after the checkpoint landed but before the marker
        shutil.rmtree(checkpoint)
    try:
        result = trainer.train(init, rows, checkpoint)
    finally:  # every trainer's model, optimizer and cached GPU blocks, before the next engine starts
        free_accelerator_memory()
    rd.mark(iteration, stage, {"skipped": False, "base_model": str(init), "steps": result.steps,
                                 "train_loss": result.train_loss, "seconds": result.seconds,
                                 "tokens_per_s": result.tokens_per_s, "num_examples": result.num_examples,
                                 "tokens_trained": result.tokens_trained,
                                 "supervised_tokens_trained": result.supervised_tokens_trained})
    logger.info("M-step %d: %d examples, %d steps, loss %s, %.0f s", iteration, result.num_examples, result.steps,
                result.train_loss, result.seconds)
    return MStepResult(checkpoint, False)
