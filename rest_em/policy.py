"""Policies and the sampler that serves them.

    samplers = Samplers(cfg)
    policy = Policy(base_path, samplers)
    policy.sampler()                # started on first use; stages that are already done never start one

One sampler is kept alive for the policy most recently asked for: the evaluation of iteration ``t``
and the E-step of ``t+1`` share the checkpoint of ``t``. When another policy is asked for, a sampler
that can load new weights in place (``switch_model``) keeps its engine; any other is closed and a new
one started. Engine settings left ``None`` in the config are not passed, so the backend's documented
default applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rest_em.config import Config

logger = logging.getLogger(__name__)

# sampling.* keys handed to the sampler as engine options (None = the backend's default).
ENGINE_OPTIONS = ("batch_size", "tensor_parallel_size", "data_parallel_size", "enable_prefix_caching",
                  "gpu_memory_utilization", "kv_cache_memory_bytes", "enforce_eager", "max_model_len", "block_size")


class Samplers:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._path: str | None = None
        self._sampler: Any = None

    def engine_options(self) -> dict[str, Any]:
        s = self.cfg.sampling
        options = {k: getattr(s, k) for k in ENGINE_OPTIONS if getattr(s, k) is not None}
        if s.backend == "ray":
            options.update(engine=s.ray_engine, replicas=s.ray_replicas, ray_address=s.ray_address,
                           shard_size=s.shard_size)
        return {"dtype": self.cfg.model.dtype, **options}

    def get(self, model_path: str | Path) -> Any:
        path = str(model_path)
        if self._path == path:
            return self._sampler
        switch = getattr(self._sampler, "switch_model", None)
        if switch is not None and switch(path):
            logger.info("loaded %s into the running %s engine", path, self._sampler.backend)
        else:
            self.close()
            from rest_em.sampling import make_sampler

            logger.info("loading sampler for %s", path)
            self._sampler = make_sampler(path, backend=self.cfg.sampling.backend, **self.engine_options())
        self._path = path
        return self._sampler

    def make_room_for_training(self) -> None:
        """Before an M-step: close a sampler that holds accelerator memory the trainer needs. A CPU engine
        stays up and serves the new checkpoint through ``switch_model``, so its start-up cost is paid once
        per run (engine and M-step fit in RAM together: 6.9 GiB peak on SmolLM2-135M, measured by
        ``benchmarks/bench_mstep.py --with-vllm-engine``)."""
        if self._sampler is not None and not _on_cpu(self._sampler):
            self.close()

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        self._sampler, self._path = None, None


@dataclass(frozen=True)
class Policy:
    """A model to sample from: the base model or an M-step's checkpoint."""

    path: Path
    samplers: Samplers

    def sampler(self) -> Any:
        return self.samplers.get(self.path)


def _on_cpu(sampler: Any) -> bool:
    # VLLMSampler.cpu is True for the CPU build; HFSampler.device is its torch device.
    return getattr(sampler, "cpu", False) is True or getattr(sampler, "device", None) == "cpu"
