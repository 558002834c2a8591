"""Mixed-precision flags for every trainer (SFT, RCRL, DPO, GRPO): one reading of a ``dtype`` setting.

    args = TrainingArguments(..., **precision_flags(config.dtype, cuda, "training.dtype"))

``auto`` follows :func:`rest_em.tokens.resolve_dtype_name`: bfloat16 mixed precision on GPUs that have
it (float16 on older ones), on CPUs with bfloat16 instructions (AVX512-BF16, AMX) bfloat16, else float32.
Both flags are always set explicitly: TRL's configs default ``bf16`` to on, which would train an
AVX2-only CPU in emulated bfloat16 (16x slower, measured).
"""

from __future__ import annotations


def precision_flags(dtype: str, cuda: bool, where: str = "training.dtype") -> dict[str, bool]:
    """``{"bf16": ..., "fp16": ...}`` for ``TrainingArguments`` (and TRL's configs) from a dtype setting."""
    from rest_em.tokens import resolve_dtype_name

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"{where} must be auto, float32, bfloat16 or float16, got {dtype!r}")
    name = resolve_dtype_name(dtype, "cuda" if cuda else "cpu", where)
    if name == "float16" and not cuda:
        raise ValueError(f"{where}=float16 needs a GPU; use float32 or bfloat16 on CPU")
    return {"bf16": name == "bfloat16", "fp16": name == "float16"}
