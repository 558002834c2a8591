"""Tokenizer and device helpers shared by the E-step samplers and the M-step trainer.

    ids = encode_prompt(tokenizer, prompt)        # the same token boundary when sampling and training
    eos = eos_token_ids(model, tokenizer)         # every id that ends a generation

No heavy import at module level: torch is imported inside the functions that need it.
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively: x86 AVX512-BF16 and AMX-BF16, Arm BF16.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when this CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX, Arm BF16).

    Without them (AVX2-only x86 such as many AMD EPYC and older Intel parts) bfloat16 is emulated and
    many times *slower* than float32 (on a 2-core AMD EPYC with AVX2 only: vLLM sampled 20 tokens/s in
    bfloat16 against 120 in float32, and the M-step trained 5 tokens/s against 82), so ``dtype: auto``
    picks float32 there. ``REST_EM_CPU_BF16=0|1`` overrides the detection. Reads ``/proc/cpuinfo``
    (Linux, once per process); elsewhere answers False.
    """
    forced = os.environ.get("REST_EM_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    flags = _cpu_flags() if cpuinfo is None else _parse_cpu_flags(cpuinfo)
    return bool(NATIVE_BF16_FLAGS & flags)


def _parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return _parse_cpu_flags(f.read())
    except OSError:
        return frozenset()


def resolve_dtype_name(dtype: str, device: str, where: str = "dtype") -> str:
    """The dtype a setting means on ``device``. ``"auto"``: bfloat16 on CUDA GPUs that support it (else
    float16); on CPUs bfloat16 where the CPU has bfloat16 instructions, else float32
    (:func:`cpu_has_native_bf16`). An explicit name is kept; an explicit bfloat16 on a CPU that only
    emulates it is logged as a warning naming ``where``."""
    if dtype == "auto":
        if device.startswith("cuda"):
            import torch

            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    if dtype == "bfloat16" and not device.startswith("cuda") and not cpu_has_native_bf16():
        logger.warning("%s: dtype bfloat16 on a CPU without bfloat16 instructions is emulated and many times slower "
                       "than float32 (measured 6x when sampling, 16x when training); set it to auto or float32",
                       where)
    return dtype


def resolve_dtype(dtype: str, device: str, where: str = "dtype"):
    """The torch dtype of a dtype setting (:func:`resolve_dtype_name`)."""
    import torch

    name = resolve_dtype_name(dtype, device, where)
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
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
