"""Give back the accelerator memory a finished in-process M-step held, before the next sampler starts.

The Trainer, the model, its gradients and the optimizer state form reference cycles, so they outlive
``train()`` until the garbage collector runs; and PyTorch's caching allocator keeps freed blocks
reserved until ``empty_cache``. A vLLM engine started next in the same process sizes its KV cache from
the free memory it sees (``gpu_memory_utilization``), so both must happen first. A launched M-step
(``training.launcher``) needs none of this: its processes exit.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def _cuda_in_use() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_initialized()


def free_accelerator_memory() -> None:
    """Collect the training objects' cycles, then return cached CUDA blocks to the driver."""
    gc.collect()
    if not _cuda_in_use():
        return
    import torch

    before = torch.cuda.memory_reserved()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.ipc_collect()
    logger.info("freed %.2f GiB of cached GPU memory after the M-step", (before - torch.cuda.memory_reserved()) / 2**30)
