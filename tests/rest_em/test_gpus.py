"""GPU counting and `auto` (issue #22), with fake GPU counts and a fake `torch.cuda.mem_get_info`: no GPU is needed."""

from __future__ import annotations

import logging

import pytest

from rest_em.config import load_config
from rest_em.gpus import GpuMemoryBusy, gpu_plan, log_gpu_plan, resolve_num_processes, resolve_replicas, wait_for_free_memory

GiB = 2**30


@pytest.mark.parametrize(("gpus", "tp", "replicas", "procs"), [(1, 1, 1, 1), (2, 1, 2, 2), (8, 1, 8, 8), (8, 2, 4, 8),
                                                              (8, 4, 2, 8), (0, 1, 1, 1)])
def test_auto_counts_follow_the_visible_gpus(gpus, tp, replicas, procs):
    assert resolve_replicas("auto", tensor_parallel_size=tp, gpus=gpus) == replicas
    assert resolve_num_processes("auto", gpus=gpus) == procs


def test_explicit_counts_are_checked_against_the_gpus():
    assert resolve_replicas(3, tensor_parallel_size=2, gpus=8) == 3
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 visible"):
        resolve_replicas(3, tensor_parallel_size=2, gpus=4)
    with pytest.raises(ValueError, match="tensor_parallel_size=4 needs that many GPUs; 2 visible"):
        resolve_replicas("auto", tensor_parallel_size=4, gpus=2)
    with pytest.raises(ValueError, match="positive integer or `auto`"):
        resolve_replicas(0, gpus=8)
    assert resolve_num_processes(3, gpus=8) == 3


def test_config_accepts_auto_and_the_plan_is_logged(caplog):
    cfg = load_config(None, ["sampling.backend=vllm", "sampling.replicas=auto", "training.launcher=torchrun",
                             "training.num_processes=auto"])
    assert cfg.sampling.replicas == "auto" and cfg.training.num_processes == "auto"
    with caplog.at_level(logging.INFO, logger="rest_em.gpus"):
        plan = log_gpu_plan(cfg, gpus=8)
    assert (plan.sampling_engines, plan.training_processes) == (8, 8)
    text = caplog.text
    assert "8 GPU(s) visible" in text and "8 vllm engine(s) x 1 GPU(s) = 8 of 8" in text
    assert "torchrun job of 8 process(es)" in text and "idle" not in text
    # the defaults on 8 GPUs: sampling on all of them, training in the driver on one (said so)
    lines = gpu_plan(load_config(None, ["sampling.backend=vllm"]), gpus=8).lines()
    assert any("training leaves 7 GPU(s) idle" in line for line in lines)
    assert gpu_plan(load_config(None, []), gpus=0).lines()[0] == "no GPU visible (CPU)"
    with pytest.raises(Exception, match="num_processes must be >= 1 or `auto`"):
        load_config(None, ["training.launcher=torchrun", "training.num_processes=0"])


class FakeGpus:
    """Two GPUs of 80 GiB whose free memory grows by `step` GiB per poll, as a process exits."""

    def __init__(self, free_gib, step_gib=0.0):
        self.free, self.step, self.polls = list(free_gib), step_gib, 0

    def __call__(self, i):
        if i == 0:
            self.polls += 1
            self.free = [min(80, f + self.step) for f in self.free]
        return int(self.free[i] * GiB), 80 * GiB


def test_wait_for_free_memory_waits_then_passes_or_names_the_gpu():
    t = [0.0]
    gpus = FakeGpus([10, 70], step_gib=10)
    info = wait_for_free_memory(0.8, timeout_s=60, poll_s=1, devices=[0, 1], mem_get_info=gpus,
                                sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])
    assert [f // GiB for f, _ in info] == [70, 80] and gpus.polls == 6  # waited 5 polls for GPU 0
    t = [0.0]
    with pytest.raises(GpuMemoryBusy, match=r"GPU 0: 10.0 of 80.0 GiB free"):
        wait_for_free_memory(0.8, timeout_s=5, poll_s=1, devices=[0, 1], mem_get_info=FakeGpus([10, 80]),
                             sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])
    assert wait_for_free_memory(0.0, devices=[0], mem_get_info=FakeGpus([0])) == []
