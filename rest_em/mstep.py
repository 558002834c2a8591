"""The filter and the M-step: build the SFT set, then fine-tune the BASE model on it.

    sft = filter_stage(rd, iteration, prompts, cfg.filter)              # iter_NN/sft.jsonl
    policy = m_step(rd, iteration, base_model, sft, cfg.training)       # iter_NN/checkpoint/ or None

ReST-EM restarts every M-step from the base model, never from the previous iterate: ``m_step`` takes
the base model path and nothing else. When the E-step found no correct solution there is nothing to
train on: the M-step is recorded as skipped (``None``) and the caller keeps the base model as the
policy of that iteration.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from rest_em import training
from rest_em.config import FilterSection
from rest_em.estep import read_rows
from rest_em.filtering import build_sft_set
from rest_em.rundir import RunDir
from rest_em.training import TrainConfig
from verifiers.io import write_jsonl_atomic

logger = logging.getLogger(__name__)


def filter_stage(rd: RunDir, iteration: int, prompts: Mapping[str, str], section: FilterSection) -> list[dict[str, Any]]:
    """Drop errors, dedupe, cap per problem; write ``sft.jsonl`` and return its rows."""
    out = rd.iter_dir(iteration)
    if not rd.done(iteration, "filter"):
        rows, stats = build_sft_set(read_rows(out / "samples.jsonl"), read_rows(out / "verdicts.jsonl"), prompts,
                                    section.cap, section.dedupe, section.seed, iteration)
        write_jsonl_atomic(out / "sft.jsonl", rows)
        rd.mark(iteration, "filter", stats.to_dict())
        logger.info("filter %d: %d SFT rows from %d problems (coverage %.1f%%)", iteration, len(rows),
                    stats.problems_with_pass, 100 * stats.coverage)
    return read_rows(out / "sft.jsonl")


def m_step(
    rd: RunDir, iteration: int, base_model: Path, sft: list[dict[str, Any]], config: TrainConfig,
    free_memory: Callable[[], None] = lambda: None,
) -> Path | None:
    """Fine-tune ``base_model`` on ``sft``; the new checkpoint, or None when there was nothing to train on.

    ``free_memory`` is called just before training starts (the loop closes the E-step's sampler, whose
    engine would otherwise hold the GPU memory the trainer needs).
    """
    checkpoint = rd.iter_dir(iteration) / "checkpoint"
    info = rd.info(iteration, "train")
    if info is not None:
        return None if info.get("skipped") else checkpoint
    if not sft:
        logger.warning("iteration %d: the E-step found no correct solution; the M-step is skipped and the "
                       "base model stays the policy", iteration)
        rd.mark(iteration, "train", {"skipped": True, "reason": "no correct samples", "seconds": 0.0})
        return None
    free_memory()
    if checkpoint.exists():  # left by a run killed after the checkpoint landed but before the marker
        shutil.rmtree(checkpoint)
    start = time.monotonic()
    result = training.train(str(base_model), sft, config, str(checkpoint))
    rd.mark(iteration, "train", {"skipped": False, "base_model": str(base_model), "steps": result.steps,
                                 "train_loss": result.train_loss, "seconds": result.seconds or time.monotonic() - start,
                                 "tokens_per_s": result.tokens_per_s, "num_examples": result.num_examples})
    logger.info("M-step %d: %d examples, %d steps, loss %s, %.0f s", iteration, result.num_examples, result.steps,
                result.train_loss, result.seconds)
    return checkpoint
