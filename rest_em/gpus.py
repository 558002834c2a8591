"""The GPUs of this node: how many each stage uses (``auto``), and their device-level free memory.

    n = visible_gpu_count()                         # CUDA_VISIBLE_DEVICES / torch.cuda.device_count(); 0 on a CPU box
    replicas = resolve_replicas("auto", tensor_parallel_size=2, gpus=n)   # n // 2 engines (1 without GPUs)
    procs = resolve_num_processes("auto", gpus=n)                          # n training processes (1 without GPUs)
    wait_for_free_memory(0.8, timeout_s=60)        # every visible GPU >= 80% free, or GpuMemoryBusy

Everything takes the GPU count (or a ``mem_get_info`` function) as an argument, so the CPU tests pass
fake GPUs; only the defaults read the real devices. ``torch`` is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

AUTO = "auto"
GiB = 2**30

MemGetInfo = Callable[[int], tuple[int, int]]  # device index -> (free bytes, total bytes), as torch.cuda.mem_get_info


def visible_gpu_count(env: dict[str, str] | None = None) -> int:
    """CUDA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (``""`` or ``-1`` = none), else what
    torch counts; 0 without torch or CUDA."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch
    except ImportError:  # pragma: no cover - the train/vllm extras bring torch
        return 0
    if not torch.cuda.is_available():
        return 0
    count = torch.cuda.device_count()
    if visible is not None:  # torch honours it too; this only guards against a set-after-import variable
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return min(len(ids), count)
    return count


def _auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def resolve_replicas(value: int | str, *, tensor_parallel_size: int = 1, gpus: int | None = None) -> int:
    """``sampling.replicas``: an int as given, ``auto`` = one engine per ``tensor_parallel_size`` visible GPUs (1
    without GPUs). Raises ValueError when the GPUs cannot hold what was asked for."""
    gpus = visible_gpu_count() if gpus is None else gpus
    if tensor_parallel_size < 1:
        raise ValueError(f"sampling.tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    if _auto(value):
        if not gpus:
            return 1
        if gpus < tensor_parallel_size:
            raise ValueError(f"sampling.tensor_parallel_size={tensor_parallel_size} needs that many GPUs; {gpus} visible")
        return gpus // tensor_parallel_size
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"sampling.replicas must be a positive integer or `auto`, got {value!r}")
    if gpus and value * tensor_parallel_size > gpus:
        raise ValueError(f"sampling.replicas={value} x tensor_parallel_size={tensor_parallel_size} needs "
                         f"{value * tensor_parallel_size} GPUs; {gpus} visible")
    return value


def resolve_num_processes(value: int | str, *, gpus: int | None = None) -> int:
    """``training.num_processes``: an int as given, ``auto`` = every visible GPU (1 without GPUs)."""
    gpus = visible_gpu_count() if gpus is None else gpus
    if _auto(value):
        return max(1, gpus)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"training.num_processes must be a positive integer or `auto`, got {value!r}")
    return value


@dataclass(frozen=True)
class GpuPlan:
    """How many GPUs each stage of a run uses on this node (logged when the run starts)."""

    gpus: int
    sampling_engines: int
    gpus_per_engine: int
    training_processes: int
    training_nodes: int
    launcher: str
    backend: str

    def lines(self) -> list[str]:
        where = f"{self.gpus} GPU(s) visible" if self.gpus else "no GPU visible (CPU)"
        sampling = (f"sampling: {self.sampling_engines} {self.backend} engine(s) x {self.gpus_per_engine} GPU(s) = "
                    f"{self.sampling_engines * self.gpus_per_engine} of {self.gpus}" if self.gpus else
                    f"sampling: {self.sampling_engines} {self.backend} engine(s) on the CPU")
        if self.launcher == "none":
            training = "training: 1 process in the driver" + (" (1 GPU)" if self.gpus else " (CPU)")
        else:
            training = (f"training: {self.launcher} job of {self.training_processes} process(es) x {self.training_nodes} "
                        f"node(s)" + (f" ({self.training_processes} of {self.gpus} GPU(s) on this node)" if self.gpus else ""))
        idle = []
        if self.gpus and self.sampling_engines * self.gpus_per_engine < self.gpus:
            idle.append(f"sampling leaves {self.gpus - self.sampling_engines * self.gpus_per_engine} GPU(s) idle "
                        "(sampling.replicas: auto uses them all)")
        used = 1 if self.launcher == "none" else self.training_processes
        if self.gpus and used < self.gpus:
            idle.append(f"training leaves {self.gpus - used} GPU(s) idle (training.launcher + training.num_processes: auto "
                        "use them all)")
        return [where, sampling, training, *idle]


def gpu_plan(cfg: Any, gpus: int | None = None) -> GpuPlan:
    """The plan of ``cfg`` (a rest_em Config) on this node; the Ray backend's replica count is the cluster's, so for
    ``backend: ray`` with ``auto`` the engines shown are this node's share."""
    gpus = visible_gpu_count() if gpus is None else gpus
    s, t = cfg.sampling, cfg.training
    tp = s.tensor_parallel_size if gpus else 1
    replicas = resolve_replicas(s.replicas, tensor_parallel_size=tp, gpus=gpus) if s.backend != "hf" else 1
    return GpuPlan(gpus=gpus, sampling_engines=replicas, gpus_per_engine=tp,
                   training_processes=resolve_num_processes(t.num_processes, gpus=gpus), training_nodes=t.num_nodes,
                   launcher=t.launcher, backend=s.backend)


def log_gpu_plan(cfg: Any, gpus: int | None = None) -> GpuPlan:
    """Log, once at the start of a run, how many GPUs each stage uses."""
    plan = gpu_plan(cfg, gpus)
    for line in plan.lines():
        logger.info("GPUs: %s", line)
    return plan


# --------------------------------------------------------------------------- device-level free memory


def _torch_mem_get_info() -> tuple[int, MemGetInfo] | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.device_count(), lambda i: tuple(torch.cuda.mem_get_info(i))


def free_memory(devices: Sequence[int] | None = None, mem_get_info: MemGetInfo | None = None) -> list[tuple[int, int]]:
    """``(free, total)`` bytes per visible GPU, device-wide (every process's allocations count, unlike
    ``torch.cuda.max_memory_allocated``); ``[]`` without GPUs."""
    if mem_get_info is None:
        found = _torch_mem_get_info()
        if found is None:
            return []
        count, mem_get_info = found
        devices = range(count) if devices is None else devices
    elif devices is None:
        raise ValueError("free_memory: pass the device indices with a custom mem_get_info")
    return [tuple(mem_get_info(i)) for i in devices]


class GpuMemoryBusy(RuntimeError):
    """A GPU stayed short of free memory past the wait."""


def wait_for_free_memory(fraction: float, *, timeout_s: float = 60.0, poll_s: float = 0.5,
                         devices: Sequence[int] | None = None, mem_get_info: MemGetInfo | None = None,
                         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                         what: str = "the M-step") -> list[tuple[int, int]]:
    """Wait until every GPU has at least ``fraction`` of its memory free; return the last ``(free, total)`` list.

    Raises :class:`GpuMemoryBusy` with the numbers when a GPU is still short after ``timeout_s``. Without GPUs
    (or ``fraction <= 0``) it returns at once. Freed memory shows up with a delay (a process exiting, the CUDA
    driver unmapping), hence the wait.
    """
    if fraction <= 0:
        return []
    deadline = clock() + timeout_s
    while True:
        info = free_memory(devices, mem_get_info)
        short = [(i, f, t) for i, (f, t) in enumerate(info) if f < fraction * t]
        if not short:
            return info
        if clock() >= deadline:
            detail = ", ".join(f"GPU {i}: {f / GiB:.1f} of {t / GiB:.1f} GiB free" for i, f, t in short)
            raise GpuMemoryBusy(f"{what} needs {fraction:.0%} of each GPU's memory free, but after {timeout_s:.0f} s "
                                f"{detail}. Another process holds it (nvidia-smi lists them): a leftover engine or "
                                "training rank of an earlier run, or another job on this GPU. Lower "
                                "sampling.free_memory_before_training to go ahead anyway")
        sleep(poll_s)
