"""DeepSpeed configuration and single-process environment for the M-step.

The JSON configs in ``configs/deepspeed/`` use ``"auto"`` values that the Hugging Face Trainer fills in
from ``TrainConfig`` (batch size, accumulation, clipping, precision), so one file serves every run.
No ``optimizer`` section: the Trainer's torch AdamW is used, which needs no compiled DeepSpeed ops
(DeepSpeed's fused/CPU Adam would have to be built with a compiler).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")


# On the CPU accelerator, one reduction bucket for a whole small model: each bucket costs a flatten, a copy
# and an all-reduce call per step, with no GPU stream to hide them behind.
CPU_BUCKET_SIZE = 500_000_000


def build_deepspeed_config(zero_stage: int, cpu: bool = False) -> dict[str, Any]:
    """A ZeRO config for ``zero_stage`` (0-3) with Trainer-filled ``"auto"`` values.

    ``cpu``: for DeepSpeed's CPU accelerator. ``overlap_comm`` and ``contiguous_gradients`` exist to overlap
    reduction with the backward pass on GPU streams and to avoid GPU memory fragmentation; on a CPU they only
    add copies into extra buffers, and small buckets add a flatten and an all-reduce per bucket. Measured on
    the default model on a 2-core AVX2 CPU (``benchmarks/bench_mstep.py --ways today,deepspeed --ds-rows 16
    --problems 8``): the GPU settings trained at 0.54x the plain backend's tokens/s, these at 0.63x, with the
    same loss curve."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage in (1, 2):
        zero.update(
            overlap_comm=not cpu,  # overlaps gradient reduction with the backward pass on GPUs
            contiguous_gradients=not cpu,
            reduce_bucket_size=CPU_BUCKET_SIZE if cpu else "auto",
            allgather_bucket_size=CPU_BUCKET_SIZE if cpu else 200_000_000,
        )
    if zero_stage == 3:
        zero.update(
            overlap_comm=True,
            contiguous_gradients=True,
            reduce_bucket_size="auto",
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            # Gather the full weights when saving so the checkpoint is a plain HF one.
            stage3_gather_16bit_weights_on_model_save=True,
        )
    return {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
    }


def load_deepspeed_config(path: str | None, zero_stage: int, cpu: bool = False) -> dict[str, Any]:
    """The config to hand to the Trainer: the JSON at ``path`` if given (it wins), else one built from
    ``zero_stage`` (for the CPU accelerator if ``cpu``). A file whose ZeRO stage differs from ``zero_stage``
    is used as is, with a warning."""
    if path is None:
        return build_deepspeed_config(zero_stage, cpu=cpu)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DeepSpeed config not found: {path}")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {exc}") from exc
    file_stage = cfg.get("zero_optimization", {}).get("stage")
    if file_stage is not None and file_stage != zero_stage:
        logger.warning(
            "DeepSpeed config %s sets ZeRO stage %s but training.zero_stage is %d; using the file's stage",
            path, file_stage, zero_stage,
        )
    return cfg


def zero_stage_of(cfg: dict[str, Any]) -> int:
    return int(cfg.get("zero_optimization", {}).get("stage", 0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_single_process_env() -> dict[str, str]:
    """Set the torch.distributed variables a launcher would (one process, rank 0) where none are set.

    A launcher (``deepspeed``, ``accelerate launch``, ``torchrun``) sets them for multi-process runs;
    then nothing is changed. Returns the variables this call added, so the caller can remove them.
    """
    if all(key in os.environ for key in DISTRIBUTED_ENV):
        return {}
    # Fill in only what is missing: a plain Trainer run earlier in this process may have left some
    # of them (accelerate sets e.g. LOCAL_RANK), and DeepSpeed falls back to MPI discovery (mpi4py)
    # unless all five are present.
    added = {}
    defaults = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }
    for key, value in defaults.items():
        if key not in os.environ:
            os.environ[key] = value
            added[key] = value
    logger.debug("single-process distributed env for DeepSpeed: %s", added)
    return added


def restore_env(snapshot: dict[str, str]) -> None:
    """Put ``os.environ`` back to ``snapshot`` (a ``dict(os.environ)`` taken before training).

    DeepSpeed/accelerate leave variables behind (``ACCELERATE_USE_DEEPSPEED=true``,
    ``LOCAL_WORLD_SIZE``, the distributed ones set above) that would turn the next plain-backend
    Trainer in this process into a DeepSpeed one.
    """
    for key in set(os.environ) - set(snapshot):
        del os.environ[key]
    for key, value in snapshot.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def skip_shm_comm_build(any_world_size: bool = False) -> bool:
    """In a single CPU process, keep DeepSpeed from JIT-compiling its shared-memory all-reduce op.

    DeepSpeed's torch backend builds ``deepspeed_shm_comm`` whenever the CPU accelerator is active
    (about 90 s with a compiler on a 2-core box the first time, then cached under
    ~/.cache/torch_extensions); with one process there is nothing to all-reduce, so the op is marked
    unavailable, which DeepSpeed handles by falling back to plain torch.distributed. Multi-process
    runs (WORLD_SIZE > 1) are left alone unless ``any_world_size`` (the launched M-step's worker: gloo
    all-reduces instead, which avoids a compile in every fresh job). Returns whether the op was skipped.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) != 1 and not any_world_size:
        return False
    try:
        import deepspeed.ops
        from deepspeed.accelerator import get_accelerator
    except ImportError:
        return False
    if get_accelerator().device_name() != "cpu":
        return False
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        return False
    deepspeed.ops.__compatible_ops__[builder.NAME] = False
    return True
