"""One engine for the whole run (issue #22): it sleeps before each M-step and wakes with the new weights; the
device-level free memory is checked with a wait; a sampler that cannot sleep is closed instead. Fake engines and a
fake `torch.cuda.mem_get_info` stand in for GPUs; the CPU path runs the real transformers sampler."""

from __future__ import annotations

import logging

import pytest

from rest_em.config import load_config
from rest_em.gpus import GpuMemoryBusy
from rest_em.policy import Samplers

GiB = 2**30


class FakeGpu:
    """One 80 GiB GPU: the engine holds 70 GiB awake, 2 GiB asleep at level 2 (the CUDA context), 12 at level 1's
    pinned buffers, and its memory comes back `exit_polls` polls after it is closed (a process exiting)."""

    def __init__(self, exit_polls: int = 2, asleep_gib: float = 2.0):
        self.engine = None
        self.exit_polls, self.asleep_gib, self.closed_at = exit_polls, asleep_gib, None
        self.polls = 0

    def __call__(self, i: int):
        self.polls += 1
        used = 0.0
        e = self.engine
        if e is not None and not e.closed:
            used = {0: 70.0, 1: 12.0, 2: self.asleep_gib}[e.level]
        elif e is not None and e.closed and self.polls - e.closed_poll < self.exit_polls:
            used = 70.0
        return int((80 - used) * GiB), 80 * GiB


class FakeEngine:
    backend = "vllm"

    def __init__(self, path, gpu: FakeGpu, can_sleep=True):
        self.path, self.gpu, self.can_sleep = path, gpu, can_sleep
        self.level, self.closed, self.calls = 0, False, [("start", path)]
        gpu.engine = self

    def sleep(self, level):
        if not self.can_sleep:
            return "the engine was started without sleep mode (enable_sleep_mode=False)"
        self.level = level
        self.calls.append(("sleep", level))
        return None

    def wake(self, path):
        self.calls.append(("wake", path, self.level))
        self.level, self.path = 0, path
        return True

    def switch_model(self, path):
        self.calls.append(("switch", path))
        self.path = path
        return True

    def close(self):
        self.closed, self.closed_poll = True, self.gpu.polls
        self.calls.append(("close",))


@pytest.fixture
def fake(monkeypatch):
    gpu = FakeGpu()
    engines: list[FakeEngine] = []
    state = {"can_sleep": True}

    def make_sampler(path, backend, **options):
        engines.append(FakeEngine(path, gpu, state["can_sleep"]))
        return engines[-1]

    import rest_em.sampling

    monkeypatch.setattr(rest_em.sampling, "make_sampler", make_sampler)
    cfg = load_config(None, ["sampling.backend=vllm"])
    return Samplers(cfg, gpus=1, mem_get_info=gpu), gpu, engines, state


def iteration(samplers: Samplers, t: int) -> None:
    """The loop's order: E-step from the last policy, M-step (engine asleep), evaluation with the new checkpoint."""
    samplers.get("base" if t == 1 else f"ckpt{t - 1}")
    samplers.make_room_for_training()
    assert samplers._sampler is None or samplers._sampler.level == 2 or samplers._sampler.closed
    samplers.get(f"ckpt{t}")


def test_one_engine_sleeps_and_wakes_with_each_checkpoint(fake):
    samplers, gpu, engines, _ = fake
    for t in (1, 2):
        iteration(samplers, t)
    assert samplers.engine_starts == 1 and len(engines) == 1
    assert engines[0].calls == [("start", "base"), ("sleep", 2), ("wake", "ckpt1", 2), ("sleep", 2),
                                ("wake", "ckpt2", 2)]
    samplers.make_room_for_training(keep_weights=True)  # the same weights needed back: level 1
    assert engines[0].calls[-1] == ("sleep", 1)
    assert samplers.get("ckpt2") is engines[0] and engines[0].calls[-1] == ("wake", "ckpt2", 1)
    samplers.close()


def test_without_sleep_mode_the_engine_is_closed_and_the_memory_awaited(fake, caplog):
    samplers, gpu, engines, state = fake
    state["can_sleep"] = False
    gpu.exit_polls = 3
    with caplog.at_level(logging.INFO, logger="rest_em.policy"):
        iteration(samplers, 1)
    closing = [r.message for r in caplog.records if "closing" in r.message]
    assert closing == ["closing the vllm sampler before the M-step (it cannot sleep: the engine was started without "
                       "sleep mode (enable_sleep_mode=False))"]
    assert engines[0].closed and gpu.polls >= 3  # waited until its memory came back
    assert samplers.engine_starts == 2  # a new engine for the checkpoint


def test_a_sleep_that_leaves_too_little_free_falls_back_to_close(fake, caplog):
    samplers, gpu, engines, _ = fake
    gpu.asleep_gib = 30.0  # 50 of 80 GiB free asleep: below sampling.free_memory_before_training = 0.8
    samplers.wait_asleep_s = 1.0
    samplers.get("base")
    with caplog.at_level(logging.WARNING, logger="rest_em.policy"):
        samplers.make_room_for_training()
    assert engines[0].calls[-2:] == [("sleep", 2), ("close",)]
    assert "asleep it still leaves too little GPU memory free" in caplog.text
    assert samplers.get("ckpt1") is engines[1]


def test_memory_held_by_someone_else_stops_the_run_with_the_numbers(fake):
    samplers, gpu, engines, state = fake
    busy = lambda i: (10 * GiB, 80 * GiB)  # noqa: E731 - another process holds 70 GiB
    samplers._mem_get_info = busy
    samplers.wait_asleep_s = samplers.wait_closed_s = 0.3
    samplers.get("base")
    with pytest.raises(GpuMemoryBusy, match="GPU 0: 10.0 of 80.0 GiB free"):
        samplers.make_room_for_training()


def test_the_cpu_path_is_the_same_sequence(tiny_model_dir, tmp_path):
    """On a CPU the transformers sampler 'sleeps' without freeing anything and wakes by switching weights in place:
    the same calls as on a GPU, one engine for the run, and the new weights are what it samples from."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from rest_em.sampling import SampleParams

    other = tmp_path / "ckpt1"
    shutil.copytree(tiny_model_dir, other)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)
    model.save_pretrained(other)
    cfg = load_config(None, ["sampling.backend=hf", "model.dtype=float32"])
    samplers = Samplers(cfg)  # the real GPU count (0 here) and no memory to wait for
    greedy = SampleParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_tokens=8, seed=0)
    try:
        first = samplers.get(tiny_model_dir)
        before = first.generate(["hello"], greedy)[0][0].text
        samplers.make_room_for_training()
        assert first._asleep == 2
        second = samplers.get(str(other))
        assert second is first and samplers.engine_starts == 1 and first.model_path == str(other)
        after = second.generate(["hello"], greedy)[0][0].text
        from rest_em.sampling.hf import HFSampler

        fresh = HFSampler(str(other), dtype="float32")
        try:
            assert after == fresh.generate(["hello"], greedy)[0][0].text != before
        finally:
            fresh.close()
    finally:
        samplers.close()
