"""Tokenizer and device helpers shared by the E-step samplers and the M-step trainer.

    ids = encode_prompt(tokenizer, prompt)        # the same token boundary when sampling and training
    eos = eos_token_ids(model, tokenizer)         # every id that ends a generation

No heavy import at module level: torch is imported inside the functions that need it.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_dtype(dtype: str, device: str):
    """``"auto"`` -> float32 on CPU, bfloat16 on CUDA GPUs that support it (else float16)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16") from None


def prompt_has_special_prefix(tokenizer, prompt: str) -> bool:
    """True when ``prompt`` already starts with BOS or another special token (e.g. a chat template's
    ``<|im_start|>``): then it must be tokenized with ``add_special_tokens=False`` so BOS isn't doubled."""
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    if tokenizer.bos_token:
        specials.append(tokenizer.bos_token)
    return any(prompt.startswith(s) for s in specials)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a ready-made prompt string, adding special tokens only when it has none yet."""
    add = not prompt_has_special_prefix(tokenizer, prompt)
    return tokenizer(prompt, add_special_tokens=add)["input_ids"]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a generation: the model's generation config eos (int or list) and the tokenizer's."""
    ids: list[int] = []
    cfg_eos = getattr(model.generation_config, "eos_token_id", None)
    if cfg_eos is None:
        cfg_eos = getattr(model.config, "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.append(cfg_eos)
    elif cfg_eos:
        ids.extend(int(i) for i in cfg_eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model has no eos_token_id (generation_config, config or tokenizer); cannot sample")
    return ids
