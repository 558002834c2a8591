"""Policies and the sampler that serves them.

    samplers = Samplers(cfg)
    policy = Policy(base_path, samplers)
    policy.sampler()                # started on first use; stages that are already done never start one

One sampler is kept alive for the whole run: the evaluation of iteration ``t`` and the E-step of ``t+1``
share the checkpoint of ``t``, and when another policy is asked for, the engine loads its weights in place
(``switch_model``). Only a sampler that cannot is closed and a new one started.

Before an M-step (:meth:`Samplers.make_room_for_training`) the engine goes to sleep: level 2 (weights and
KV cache dropped) because a new checkpoint comes next, level 1 (weights kept in CPU memory) when the same
weights are needed back. Then every GPU's device-level free memory is checked against
``sampling.free_memory_before_training``, with a wait. A sampler that cannot sleep, or whose sleep left too
little free, is closed instead (one log line says why) and the check waits again. The next :meth:`get` wakes
the engine with the new weights. On a CPU the same calls run: the engine stays in RAM (nothing to free on a
device) and wakes by switching weights. Engine settings left ``None`` in the config are not passed, so the
backend's documented default applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rest_em.config import Config

logger = logging.getLogger(__name__)

# sampling.* keys handed to the sampler as engine options (None = the backend's default).
ENGINE_OPTIONS = ("batch_size", "tensor_parallel_size", "enable_prefix_caching",
                  "gpu_memory_utilization", "kv_cache_memory_bytes", "enforce_eager", "max_model_len", "block_size")


class Samplers:
    def __init__(self, cfg: Config, gpus: int | None = None, mem_get_info: Any = None) -> None:
        self.cfg = cfg
        self._path: str | None = None
        self._sampler: Any = None
        self._asleep = False
        self._gpus = gpus  # None = count the visible GPUs (tests pass fakes)
        self._mem_get_info = mem_get_info  # None = torch.cuda.mem_get_info
        self.engine_starts = 0  # engines built in this run (one per run unless a switch or wake failed)
        # how long the free-memory check waits: after a sleep (freed at once) and after a close (processes exit)
        self.wait_asleep_s, self.wait_closed_s = 30.0, 120.0

    def engine_options(self) -> dict[str, Any]:
        from rest_em.gpus import resolve_replicas

        s = self.cfg.sampling
        options = {k: getattr(s, k) for k in ENGINE_OPTIONS if getattr(s, k) is not None}
        if s.backend == "ray":  # `auto` resolves against the Ray cluster's GPUs, in RaySampler
            options.update(engine=s.ray_engine, replicas=None if s.replicas == "auto" else s.replicas,
                           ray_address=s.ray_address, shard_size=s.shard_size)
        elif s.backend in ("vllm", "auto"):
            options["replicas"] = resolve_replicas(s.replicas, tensor_parallel_size=s.tensor_parallel_size,
                                                   gpus=self._gpus)
        return {"dtype": self.cfg.model.dtype, **options}

    def get(self, model_path: str | Path) -> Any:
        path = str(model_path)
        if self._asleep:
            self._asleep = False
            if self._sampler.wake(path):
                self._path = path
                return self._sampler
            self.close()
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
            self.engine_starts += 1
        self._path = path
        return self._sampler

    def make_room_for_training(self, keep_weights: bool = False) -> None:
        """Before an M-step: put the engine to sleep (level 2, or level 1 with ``keep_weights``), then wait until
        every GPU has ``sampling.free_memory_before_training`` of its memory free. A sampler that cannot sleep, or
        whose sleep did not free enough, is closed, and the wait repeats (raises ``rest_em.gpus.GpuMemoryBusy``
        with the numbers when the memory stays taken). On a CPU the engine stays in RAM and nothing is waited for."""
        from rest_em.gpus import GpuMemoryBusy, wait_for_free_memory

        fraction = self.cfg.sampling.free_memory_before_training
        if self._sampler is not None and not self._asleep:
            sleep = getattr(self._sampler, "sleep", None)
            reason = sleep(1 if keep_weights else 2) if sleep is not None else "it has no sleep mode"
            if reason is None:
                self._asleep = True
            else:
                logger.info("closing the %s sampler before the M-step (it cannot sleep: %s)", self._sampler.backend, reason)
                self.close()
        devices = None if self._mem_get_info is None else range(self._gpus or 0)
        try:  # a sleeping engine frees at once; a closed one's processes take a while to exit
            wait_for_free_memory(fraction, timeout_s=self.wait_asleep_s if self._asleep else self.wait_closed_s, devices=devices,
                                 mem_get_info=self._mem_get_info)
        except GpuMemoryBusy as exc:
            if not self._asleep:
                raise
            logger.warning("closing the sleeping %s sampler before the M-step: asleep it still leaves too little GPU "
                           "memory free (%s)", self._sampler.backend, str(exc).split(". ")[0])
            self.close()
            wait_for_free_memory(fraction, timeout_s=self.wait_closed_s, devices=devices, mem_get_info=self._mem_get_info)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        self._sampler, self._path, self._asleep = None, None, False


@dataclass(frozen=True)
class Policy:
    """A model to sample from: the base model or an M-step's checkpoint."""

    path: Path
    samplers: Samplers

    def sampler(self) -> Any:
        return self.samplers.get(self.path)

