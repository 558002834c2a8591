"""Publishing a checkpoint: written into a scratch sibling, then renamed into place, so a killed run never
leaves a half-written checkpoint where the next stage (vLLM, transformers, the evaluation) would load it.

    publish_model(model, tokenizer, out)          # safetensors + config + tokenizer, atomically
    publish_dir(scratch, out)                     # a finished folder (e.g. a trainer's) renamed into place

Every trainer uses these (SFT, RCRL, DPO, the GRPO export), so a checkpoint always has the same files:
``config.json``, ``*.safetensors``, the tokenizer files and ``generation_config.json`` when the model has
one. A LoRA model (peft) is merged into its base weights first: the checkpoint is a plain Hugging Face
model that every engine loads as any other.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

# Files a trainer leaves in its output folder that are not part of a model checkpoint.
SCRATCH_FILES = ("training_args.bin", "trainer_state.json", "optimizer.pt", "scheduler.pt", "scaler.pt")


def scratch_dir(out: Path) -> Path:
    """The scratch sibling of ``out`` (same filesystem, so the final rename is atomic)."""
    return out.with_name(f".{out.name}.partial")


def publish_dir(tmp: Path, out: Path) -> Path:
    """Replace ``out`` with the finished ``tmp`` (renames only; trainer scratch files are dropped first)."""
    tmp, out = Path(tmp), Path(out)
    for name in SCRATCH_FILES:
        (tmp / name).unlink(missing_ok=True)
    for leftover in list(tmp.glob("checkpoint-*")) + list(tmp.glob("rng_state*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return out


def mergeable(model):
    """The plain model to save: a peft model's adapters merged into the base weights; others as they are."""
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        merged = model.merge_and_unload()
        logger.info("merged the LoRA adapter into the base weights")
        return merged
    return model


def save_model_files(model, tokenizer, directory: Path) -> None:
    """Write ``model`` (merged when it is a LoRA model) as safetensors, with ``tokenizer``, into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mergeable(model).save_pretrained(str(directory), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))


def publish_model(model, tokenizer, out: Path) -> Path:
    """Save ``model`` and ``tokenizer`` to a scratch sibling of ``out`` and rename it into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_files(model, tokenizer, tmp)
    return publish_dir(tmp, out)


def publish_files(src: Path, out: Path, skip=lambda p: False) -> Path:
    """Copy the files of ``src`` (a trainer checkpoint) except those ``skip`` names into ``out``, atomically."""
    src, out = Path(src), Path(out)
    if not (src / "config.json").exists():
        raise RuntimeError(f"{src}: no config.json, not a model checkpoint")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and not skip(p):
            shutil.copy2(p, tmp / p.name)
    return publish_dir(tmp, out)
