"""The M-step as a launched job (issue #10): one driver, training under torchrun with 2 CPU processes
(gloo, DeepSpeed ZeRO-2 on its CPU accelerator); `rest-em iterate` under a launcher is refused; the
in-process trainer gives its memory back before the next sampler starts."""

from __future__ import annotations

import json
import time
import weakref
from pathlib import Path

import pytest

from rest_em.config import load_config
from rest_em.sampling.params import Completion
from rest_em.training import TrainConfig
from rest_em.training.launch import LaunchedTrainer, TrainJobFailed, make_trainer, plan_job, refuse_under_launcher

REPO = Path(__file__).resolve().parents[2]


# -- command lines -------------------------------------------------------------------------------------


def test_launcher_command_lines(tmp_path):
    args = ["--rows", "r.jsonl"]
    tr = plan_job(TrainConfig(launcher="torchrun", num_processes=4), args, "py")
    (cmd,) = tr.commands
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"] and cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[-4:] == ["-m", "rest_em.training.worker", "--rows", "r.jsonl"] and tr.master_addr == "127.0.0.1"

    ds = plan_job(TrainConfig(launcher="deepspeed", num_processes=8), args, "py").commands[0]
    assert ds[:3] == ["py", "-m", "deepspeed.launcher.runner"] and ds[ds.index("--num_gpus") + 1] == "8"
    assert ds[ds.index("--module") + 1] == "rest_em.training.worker"

    acc = plan_job(TrainConfig(launcher="accelerate", num_processes=2), args, "py").commands[0]
    assert acc[:3] == ["py", "-m", "accelerate.commands.launch"] and "--multi_gpu" in acc

    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# nodes\nnode1 slots=8\nnode2 slots=8\n")
    two = plan_job(TrainConfig(launcher="torchrun", num_processes=8, num_nodes=2, hostfile=str(hostfile),
                               remote_shell="ssh -o BatchMode=yes"), args, "py")
    head, other = two.commands
    assert (two.master_addr, two.master_port) == ("node1", 29500)
    assert head[head.index("--node_rank") + 1] == "0" and head[head.index("--master_addr") + 1] == "node1"
    assert other[:4] == ["ssh", "-o", "BatchMode=yes", "node2"] and "--node_rank 1" in other[4]
    dsm = plan_job(TrainConfig(launcher="deepspeed", num_processes=8, num_nodes=2, hostfile=str(hostfile)), args, "py")
    assert len(dsm.commands) == 1 and "--hostfile" in dsm.commands[0]  # deepspeed reaches the nodes itself
    with pytest.raises(ValueError, match="needs training.hostfile"):
        plan_job(TrainConfig(launcher="torchrun", num_nodes=2), args, "py")
    with pytest.raises(ValueError, match="need a training.launcher"):
        TrainConfig(num_processes=2)
    assert type(make_trainer(TrainConfig())).__name__ == "SFTTrainer"
    assert isinstance(make_trainer(TrainConfig(launcher="torchrun")), LaunchedTrainer)


# -- the driver refuses to be a rank ---------------------------------------------------------------------


def test_iterate_under_a_launcher_is_refused(tmp_path, monkeypatch, capsys):
    """Before: under torchrun/accelerate/deepspeed every rank ran the whole loop."""
    from rest_em.cli import main

    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    code = main(["iterate", "--config", str(REPO / "configs" / "default.yaml"), f"run.output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "ONE driver process" in err and "WORLD_SIZE=2" in err and "training.launcher=torchrun" in err
    assert not any(tmp_path.iterdir())  # nothing was started
    refuse_under_launcher({"WORLD_SIZE": "1", "RANK": "0"})  # a one-process "job" is fine


# -- the in-process trainer frees memory ---------------------------------------------------------------


def test_in_process_m_step_frees_the_trainer_memory(tiny_model_dir, tmp_path, monkeypatch):
    """Before: nothing collected the trainer's cycles or emptied the CUDA cache before the next engine."""
    import torch
    import transformers

    from rest_em.training import memory

    models: list = []
    load = transformers.AutoModelForCausalLM.from_pretrained

    def spy_load(*a, **kw):
        model = load(*a, **kw)
        models.append(weakref.ref(model))
        return model

    calls: list = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy_load)
    monkeypatch.setattr(memory, "_cuda_in_use", lambda: True)
    for name in ("synchronize", "ipc_collect"):
        monkeypatch.setattr(torch.cuda, name, lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append([m() is None for m in models]))
    rows = [{"prompt": f"Q{i}? ", "completion": f"A{i}.", "problem_id": f"p{i}"} for i in range(4)]
    make_trainer(TrainConfig(num_epochs=1, per_device_batch_size=4, max_seq_len=32)).train(
        Path(tiny_model_dir), rows, tmp_path / "ckpt")
    assert calls == [[True]]  # emptied once, after the trained model was unreachable


# -- two processes, for real ----------------------------------------------------------------------------


class AnsweringSampler:
    backend = "fake"

    def __init__(self, log: list, path: str, answers: dict[str, str]) -> None:
        self.answers, self.log, self.path = answers, log, path
        log.append(("open", path))

    def generate(self, prompts, params, desc=""):
        self.log.append(("generate", self.path, params.n, desc))
        return [[Completion(f"So x = \\boxed{{{next(a for q, a in self.answers.items() if q in p)}}}." + " ok" * (i % 3), "stop", 5)
                 for i in range(params.n)] for p in prompts]

    def close(self):
        pass


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_two_process_deepspeed_m_step_matches_one_process(tiny_model_dir, tmp_path, monkeypatch):
    """One driver runs the loop (the E-step once); the M-step is `torchrun --nproc_per_node 2` with DeepSpeed
    ZeRO-2 on gloo. Each global batch is the two ranks' micro-batches together, and the weights equal a
    1-process run with the same global batch within 1e-5. One epoch: the data order of later epochs is
    seeded differently at different world sizes (same distribution, other order)."""
    pytest.importorskip("deepspeed")
    from rest_em.loop import run
    from rest_em.tasks import load_task

    trace = tmp_path / "trace"
    monkeypatch.setenv("REST_EM_TRACE_BATCHES", str(trace / "two"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = load_config(REPO / "configs" / "default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path / 'runs'}", "run.name=ddp", "task.num_train=12",
        "task.num_test=2", "sampling.n=2", "eval.greedy=false", "eval.n=1", "eval.k_list=[1]", "eval.maj_k=0",
        "verifier.workers=1", "iterations=1", "filter.cap=1", "training.backend=deepspeed", "training.zero_stage=2",
        "training.launcher=torchrun", "training.num_processes=2", "training.per_device_batch_size=2",
        "training.num_epochs=1", "training.learning_rate=1e-3", "training.max_seq_len=320",
        "training.packing=false"])  # padded batches on both sides: the in-process trace below wraps that collator
    task = load_task(cfg.task)
    answers = {p.question: p.payload["reference"] for p in (*task.train, *task.test)}
    log: list = []
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: AnsweringSampler(log, path, answers))
    t0 = time.monotonic()
    run(cfg)
    wall = time.monotonic() - t0
    it = cfg.run_dir() / "iter_01"
    assert [e for e in log if e[0] == "generate" and e[3].startswith("E-step")] == [
        ("generate", str(tiny_model_dir), 2, "E-step 1 sampling")]  # the E-step ran once, in the driver
    sft = [json.loads(line) for line in (it / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == 12
    two = [json.loads((trace / "two" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [t["world_size"] for t in two] == [2, 2]
    assert all(len(b) == 2 for t in two for b in t["batches"]) and len(two[0]["batches"]) == len(two[1]["batches"]) == 3
    assert "$ " in (it / "train_job" / "job.log").read_text()

    # The same global batch (4) in one process (in this one: DeepSpeed sets up a 1-process group itself).
    from rest_em.training import trainer as trainer_mod
    from rest_em.training.worker import fingerprint

    one: list = []

    class Tracing(trainer_mod.CompletionOnlyCollator):
        def __call__(self, features):
            one.append([fingerprint(f) for f in features])
            return super().__call__(features)

    monkeypatch.setattr(trainer_mod, "CompletionOnlyCollator", Tracing)
    one_cfg = TrainConfig(**{**json.loads((it / "train_job" / "train_config.json").read_text()),
                             "launcher": "none", "num_processes": 1, "per_device_batch_size": 4})
    t1 = time.monotonic()
    make_trainer(one_cfg).train(Path(tiny_model_dir), sft, tmp_path / "one" / "checkpoint")
    wall_one = time.monotonic() - t1
    global_two = [sorted(a + b) for a, b in zip(two[0]["batches"], two[1]["batches"])]
    assert global_two == [sorted(b) for b in one]  # both ranks trained on each global batch, split between them
    a, b = _weights(it / "checkpoint"), _weights(tmp_path / "one" / "checkpoint")
    base = _weights(Path(tiny_model_dir))
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float((a[k] - base[k]).abs().max()) for k in a)
    print(f"2-process loop {wall:.0f} s, 1-process M-step (in process) {wall_one:.0f} s; max |w2 - w1| = {diff:.2e}, "
          f"max |w2 - w_base| = {moved:.2e}")
    assert moved > 1e-3 and diff < 1e-5


def test_a_failed_job_reports_its_log_tail(tiny_model_dir, tmp_path):
    rows = [{"prompt": "Q? ", "completion": "A.", "problem_id": "p"}]
    trainer = LaunchedTrainer(TrainConfig(launcher="torchrun", num_processes=1))
    with pytest.raises(TrainJobFailed, match=r"(?s)exited with status \[1\].*FileNotFoundError: base model directory not found"):
        trainer.train(tmp_path / "no-such-model", rows, tmp_path / "iter_01" / "checkpoint")


# -- Slurm, GPUs of a shared node, stopping a launched job (issue #22) ------------------------------------


def test_a_second_driver_under_slurm_is_refused():
    """Before: `srun -N4 rest-em iterate` started four drivers on one run directory (the guard read no SLURM_*)."""
    from rest_em.training.launch import LaunchedUnderLauncher

    step = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4"}
    for rank in ("0", "1", "3"):
        with pytest.raises(LaunchedUnderLauncher, match="rank of a 4-process job.*SLURM_PROCID=" + rank):
            refuse_under_launcher({**step, "SLURM_PROCID": rank})
    # a second task whose step size is unknown is still a second driver
    with pytest.raises(LaunchedUnderLauncher, match="training.launcher=srun"):
        refuse_under_launcher({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "1", "SLURM_PROCID": "1"})
    # the sbatch script body (no step) of a 4-task job, and a one-task step, run the driver
    refuse_under_launcher({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_NODELIST": "n[1-4]"})
    refuse_under_launcher({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "2", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"})


def test_srun_launcher_runs_torchrun_once_per_node_of_the_allocation(tmp_path, monkeypatch):
    scontrol = tmp_path / "bin" / "scontrol"  # what Slurm's `scontrol show hostnames n[1-2]` prints
    scontrol.parent.mkdir()
    scontrol.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames gpu[01-02]' ] && printf 'gpu01\\ngpu02\\n'\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}:{__import__('os').environ['PATH']}")
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "gpu[01-02]"}
    plan = plan_job(TrainConfig(launcher="srun", num_processes=8, num_nodes=2), ["--rows", "r"], "py", env=env)
    (cmd,) = plan.commands
    assert cmd[0] == "srun" and "--overlap" in cmd and "--nodes=2" in cmd and "--ntasks-per-node=1" in cmd
    assert "--nodelist=gpu01,gpu02" in cmd and "--kill-on-bad-exit=1" in cmd
    run = cmd[cmd.index("py"):]
    assert run[:3] == ["py", "-m", "torch.distributed.run"] and run[run.index("--nproc_per_node") + 1] == "8"
    assert run[run.index("--rdzv_endpoint") + 1] == "gpu01:29500" and run[run.index("--rdzv_id") + 1] == "rest-em-42"
    with pytest.raises(ValueError, match="has 2 node"):
        plan_job(TrainConfig(launcher="srun", num_nodes=3), [], "py", env=env)
    with pytest.raises(ValueError, match="not inside a Slurm allocation"):
        plan_job(TrainConfig(launcher="srun"), [], "py", env={})


def test_deepspeed_keeps_to_the_visible_gpus(monkeypatch):
    """Before: DeepSpeed's --num_gpus numbered GPUs from 0, outside CUDA_VISIBLE_DEVICES on a shared node."""
    import rest_em.training.launch as launch

    monkeypatch.setattr(launch, "_cuda_available", lambda: True)
    plan = plan_job(TrainConfig(launcher="deepspeed", num_processes=2), [], "py", env={"CUDA_VISIBLE_DEVICES": "4,5,6"})
    assert "--num_gpus" not in plan.commands[0] and plan.env["CUDA_VISIBLE_DEVICES"] == "4,5"
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=4 has 1 GPU"):
        plan_job(TrainConfig(launcher="deepspeed", num_processes=2), [], "py", env={"CUDA_VISIBLE_DEVICES": "4"})
    monkeypatch.setattr("rest_em.gpus.visible_gpu_count", lambda env=None: 8)
    auto = plan_job(TrainConfig(launcher="torchrun", num_processes="auto"), [], "py", env={})
    assert auto.commands[0][auto.commands[0].index("--nproc_per_node") + 1] == "8"


def test_sigterm_during_a_launched_m_step_leaves_no_process(tiny_model_dir, tmp_path):
    """Before: no SIGTERM handler, and the launched job (its own session) ran on after its driver was stopped."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from tests.rest_em.test_processes import ps_matching, wait_until

    rows = [{"prompt": f"Q{i}? ", "completion": f"A{i}." * 8, "problem_id": f"p{i}"} for i in range(64)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    script = textwrap.dedent(f"""
        import json, logging
        from pathlib import Path
        from rest_em.processes import install_signal_handlers
        from rest_em.training import TrainConfig
        from rest_em.training.launch import LaunchedTrainer
        logging.basicConfig(level=logging.INFO)
        install_signal_handlers()
        rows = json.loads(Path({str(tmp_path / "rows.json")!r}).read_text())
        cfg = TrainConfig(launcher="torchrun", num_processes=2, num_epochs=200, per_device_batch_size=1, dtype="float32")
        LaunchedTrainer(cfg).train(Path({tiny_model_dir!r}), rows, Path({str(tmp_path / "iter_01" / "checkpoint")!r}))
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    job_log = tmp_path / "iter_01" / "train_job" / "job.log"
    marker = str(tmp_path / "iter_01" / "train_job" / "result.json")  # in every rank's command line
    # torchrun and both ranks are up and training (the ranks log their steps)
    assert wait_until(lambda: len(ps_matching(marker)) >= 3 and "/s]" in job_log.read_text(errors="replace")
                      if job_log.exists() else False, 240), (ps_matching(marker), job_log.read_text()[-2000:])
    driver.send_signal(signal.SIGTERM)
    code = driver.wait(timeout=60)
    err = driver.stderr.read()
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "stopping the launched job's process group" in err
    assert wait_until(lambda: ps_matching(marker) == [], 10), ps_matching(marker)
