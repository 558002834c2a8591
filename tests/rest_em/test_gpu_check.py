"""benchmarks/gpu_check.py on a machine without CUDA: a clear message and a clean exit (issue #10)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def test_gpu_check_without_cuda_exits_cleanly(monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run benchmarks/gpu_check.py itself")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "nothing was run" in proc.stdout
    assert "Traceback" not in proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    # one SKIP line per check, in order, each saying why (issue #22)
    assert [(w[0], w[1]) for w in lines] == [("SKIP", name) for name in (
        "packed-llama-sdpa", "packed-llama-eager", "packed-qwen2-sdpa", "packed-qwen2-eager", "no-leak-llama",
        "no-leak-qwen2", "m-step-in-process", "hf-sampler", "launched-torchrun", "launched-accelerate", "iterate",
        "checkpoint-round-trip", "vllm-sleep-wake-switch")]
    assert all(" ".join(w[-3:]) == "no CUDA device" for w in lines)

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--require-gpu"]) == 1
    assert "no CUDA device" in capsys.readouterr().out
