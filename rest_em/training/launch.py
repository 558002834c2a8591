"""The M-step as a launched job: one driver process (``rest-em iterate``), training under a launcher.

    trainer = make_trainer(cfg.training)      # SFTTrainer (in process) or LaunchedTrainer
    result = trainer.train(base, sft_rows, run_dir / "iter_01" / "checkpoint")

``training.launcher``:

- ``none``: train in the driver process (``rest_em.training.train``), the CPU default.
- ``torchrun``, ``accelerate``, ``deepspeed``: the driver writes the SFT rows and the training config
  to ``iter_NN/train_job/``, starts ``python -m rest_em.training.worker`` under that launcher with
  ``training.num_processes`` processes on each of ``training.num_nodes`` nodes, waits, checks the exit
  status and the checkpoint files, and raises :class:`TrainJobFailed` with the job's log tail when
  either is wrong. The job's processes exit when it ends, which frees all of their GPU memory before the
  next sampling engine starts.

Several nodes: ``deepspeed`` reaches the other nodes itself (its ``--hostfile``, over pdsh/ssh);
``torchrun`` and ``accelerate`` are started once per node, node 0 here and the others through
``training.remote_shell`` (``ssh`` by default) with the hosts of ``training.hostfile``, all meeting at
``training.master_addr:master_port``. Every node needs the same Python environment at the same path and
the run directory on a shared filesystem (docs/scaling.md).

``rest-em iterate`` itself must not run under a launcher (every rank would run the whole loop):
:func:`refuse_under_launcher` stops it with what to do instead.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rest_em.training import LAUNCHERS, TrainConfig, TrainResult

logger = logging.getLogger(__name__)

DEFAULT_MULTI_NODE_PORT = 29500
# Environment variables that say "this process is one rank of a launched job".
_RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
             "SLURM_STEP_NUM_TASKS")


class TrainJobFailed(RuntimeError):
    """The launched M-step exited non-zero or left no complete checkpoint."""


class LaunchedUnderLauncher(RuntimeError):
    """``rest-em iterate`` was started as one rank of a multi-process job."""


def launched_world_size(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    sizes = [int(env[k]) for k in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")
             if env.get(k, "").isdigit()]
    return max(sizes, default=1)


def slurm_task(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(SLURM_PROCID, tasks of this step)`` when this process is a task of an ``srun`` step, else None. The body of
    an ``sbatch`` script is not a step task (no ``SLURM_STEP_ID``), whatever ``--ntasks`` the job has."""
    env = os.environ if env is None else env
    if "SLURM_STEP_ID" not in env or not env.get("SLURM_PROCID", "").isdigit():
        return None
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
    return int(env["SLURM_PROCID"]), int(tasks) if tasks.isdigit() else 1


def refuse_under_launcher(env: dict[str, str] | None = None) -> None:
    """Raise :class:`LaunchedUnderLauncher` when this process is a rank of a job with more than one process, or a
    task of a multi-task ``srun`` step (``srun -N4 rest-em iterate`` would start four drivers on one run directory)."""
    env = os.environ if env is None else env
    world = launched_world_size(env)
    slurm = slurm_task(env)
    if slurm is not None:
        world = max(world, slurm[1])
        if slurm[0] > 0:  # rank > 0 of a step is always a second driver
            world = max(world, slurm[0] + 1)
    if world <= 1:
        return
    seen = ", ".join(f"{k}={env[k]}" for k in _RANK_ENV if k in env)
    raise LaunchedUnderLauncher(
        f"rest-em iterate runs as ONE driver process, but it was started as a rank of a {world}-process job ({seen}): "
        "every rank would run the whole loop (E-steps, verification, evaluation) on the same run directory. Start it "
        "once, without torchrun / accelerate launch / deepspeed / a multi-task srun, and let it launch only the M-step: "
        "e.g. `rest-em iterate --config configs/math.yaml training.launcher=torchrun training.num_processes=auto`; "
        "under Slurm run it in the sbatch script body (or `srun --ntasks=1`) with training.launcher=srun "
        "(examples/slurm/, docs/scaling.md)")


def make_trainer(config: TrainConfig) -> Any:
    """The M-step trainer for ``training.launcher``: in process (``none``) or a launched job."""
    if getattr(config, "launcher", "none") == "none":
        from rest_em.training.base import SFTTrainer

        return SFTTrainer(config)
    return LaunchedTrainer(config)


# --------------------------------------------------------------------------- command lines


def read_hostfile(path: str | Path) -> list[tuple[str, int | None]]:
    """``(host, slots)`` per line of a DeepSpeed-style hostfile (``node1 slots=8``; ``#`` comments)."""
    hosts = []
    for raw in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        slots = next((int(p.split("=", 1)[1]) for p in parts[1:] if p.startswith("slots=")), None)
        hosts.append((parts[0], slots))
    if not hosts:
        raise ValueError(f"training.hostfile {path}: no hosts")
    return hosts


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JobPlan:
    """The processes to start: one command per node (node 0 first), each run locally or through a shell."""

    commands: list[list[str]]  # full argv per node; node i > 0 already wrapped in the remote shell
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    master_addr: str = "127.0.0.1"
    master_port: int = 0


def slurm_hosts(env: dict[str, str] | None = None) -> list[str]:
    """The hosts of this Slurm allocation (``scontrol show hostnames $SLURM_JOB_NODELIST``), first = batch host."""
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError("not inside a Slurm allocation (no SLURM_JOB_NODELIST): training.launcher=srun runs the M-step "
                         "in the nodes of an sbatch/salloc job")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def plan_job(config: TrainConfig, worker_args: Sequence[str], python: str = sys.executable,
             env: dict[str, str] | None = None) -> JobPlan:
    """The launcher command line(s) that run ``python -m rest_em.training.worker <worker_args>``."""
    from rest_em.gpus import resolve_num_processes

    env_in = os.environ if env is None else env
    launcher, nnodes = config.launcher, config.num_nodes
    nproc = resolve_num_processes(config.num_processes)
    if launcher not in LAUNCHERS or launcher == "none":
        raise ValueError(f"training.launcher {launcher!r}: nothing to launch")
    worker = ["-m", "rest_em.training.worker", *worker_args]
    if launcher == "srun":  # one torchrun per node of the allocation, rendezvous over c10d at the first node
        hosts_ = [h for h, _ in read_hostfile(config.hostfile)] if config.hostfile else slurm_hosts(env_in)
        if len(hosts_) < nnodes:
            raise ValueError(f"training.num_nodes={nnodes}, but the Slurm allocation has {len(hosts_)} node(s)")
        addr = config.master_addr or hosts_[0]
        port = config.master_port or DEFAULT_MULTI_NODE_PORT
        cmd = ["srun", "--overlap", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
               "--kill-on-bad-exit=1", "--job-name=rest-em-mstep", f"--nodelist={','.join(hosts_[:nnodes])}",
               python, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc_per_node", str(nproc),
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{addr}:{port}",
               "--rdzv_id", f"rest-em-{env_in.get('SLURM_JOB_ID', 'job')}", *worker]
        return JobPlan([cmd], {}, addr, port)
    hosts = read_hostfile(config.hostfile) if config.hostfile else []
    if nnodes > 1 and not hosts and launcher != "deepspeed":
        raise ValueError(f"training.num_nodes={nnodes} with training.launcher={launcher} needs training.hostfile (one "
                         "host per line, this node first)")
    if hosts and len(hosts) < nnodes:
        raise ValueError(f"training.hostfile {config.hostfile} lists {len(hosts)} hosts for training.num_nodes={nnodes}")
    addr = config.master_addr or (hosts[0][0] if nnodes > 1 and hosts else "127.0.0.1")
    port = config.master_port or (DEFAULT_MULTI_NODE_PORT if nnodes > 1 else _free_port())
    extra: dict[str, str] = {}
    if launcher == "deepspeed":
        cmd = [python, "-m", "deepspeed.launcher.runner", "--master_addr", addr, "--master_port", str(port)]
        if config.hostfile:
            cmd += ["--hostfile", str(Path(config.hostfile).expanduser()), "--num_nodes", str(nnodes)]
            if nnodes > 1 and "SLURM_JOB_ID" in env_in:  # DeepSpeed's own Slurm runner: srun instead of pdsh/ssh
                cmd += ["--launcher", "slurm", "--launcher_args=--overlap"]
        visible = env_in.get("CUDA_VISIBLE_DEVICES", "")
        if visible and not config.hostfile and _cuda_available():
            # DeepSpeed's --num_gpus ignores CUDA_VISIBLE_DEVICES and numbers GPUs from 0, which on a shared node are
            # not ours; without it the runner turns CUDA_VISIBLE_DEVICES into --include localhost:<our ids>.
            ids = [v for v in visible.split(",") if v.strip()]
            if nproc > len(ids):
                raise ValueError(f"training.num_processes={nproc}, but CUDA_VISIBLE_DEVICES={visible} has {len(ids)} GPU(s)")
            extra["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:nproc])
        else:
            cmd += ["--num_gpus", str(nproc)]
        cmd += ["--module", *worker[1:]]
        if not _cuda_available():
            extra["LOCAL_SIZE"] = str(nproc)  # DeepSpeed's CPU accelerator counts devices from it
        return JobPlan([cmd], extra, addr, port)
    commands = []
    for node in range(nnodes):
        if launcher == "torchrun":
            cmd = [python, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node_rank", str(node),
                   "--nproc_per_node", str(nproc), "--master_addr", addr, "--master_port", str(port), *worker]
        else:  # accelerate launch: num_processes is the total over all machines
            cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(nproc * nnodes),
                   "--num_machines", str(nnodes), "--machine_rank", str(node), "--main_process_ip", addr,
                   "--main_process_port", str(port), "--dynamo_backend", "no", "--mixed_precision", "no"]
            if nproc * nnodes > 1:  # its torch.distributed launcher; on CPUs too (`--cpu` would mean one process)
                cmd.append("--multi_gpu")
            cmd += worker
        if node > 0:
            passed = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "REST_EM_", "OMP_", "NCCL_"))}
            passed["PYTHONPATH"] = _pythonpath()
            remote = f"cd {shlex.quote(os.getcwd())} && " + shlex.join(["env", *(f"{k}={v}" for k, v in passed.items()), *cmd])
            cmd = [*shlex.split(config.remote_shell), hosts[node][0], remote]
        commands.append(cmd)
    return JobPlan(commands, extra, addr, port)


def _pythonpath() -> str:
    """This checkout first, so the job runs the same rest_em as the driver."""
    return os.pathsep.join([str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])])


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - the train extra brings torch
        return False
    return torch.cuda.is_available()


# --------------------------------------------------------------------------- the trainer


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def checkpoint_complete(path: Path) -> list[str]:
    """What a finished checkpoint directory lacks (empty when complete)."""
    missing = [name for name in ("config.json",) if not (path / name).exists()]
    if not list(path.glob("*.safetensors")):
        missing.append("*.safetensors")
    if not (path / "tokenizer_config.json").exists() and not (path / "tokenizer.json").exists():
        missing.append("tokenizer files")
    return missing


@dataclass(frozen=True)
class LaunchedTrainer:
    """The M-step as a child job under ``training.launcher`` (see the module docstring)."""

    config: TrainConfig
    python: str = sys.executable
    extra_worker_args: tuple[str, ...] = ()  # e.g. ("--trace-batches", DIR) in tests

    def train(self, init: Path, rows: Sequence[dict[str, Any]], output_dir: Path) -> TrainResult:
        output_dir = Path(output_dir)
        job = output_dir.parent / "train_job"
        job.mkdir(parents=True, exist_ok=True)
        rows_file, config_file, result_file, log_file = (job / n for n in ("rows.jsonl", "train_config.json",
                                                                           "result.json", "job.log"))
        from verifiers.io import write_jsonl_atomic, write_text_atomic

        write_jsonl_atomic(rows_file, list(rows))
        write_text_atomic(config_file, json.dumps(asdict(self.config), indent=1))
        result_file.unlink(missing_ok=True)
        args = ["--rows", str(rows_file.resolve()), "--init", str(Path(init).resolve()), "--out",
                str(output_dir.resolve()), "--config", str(config_file.resolve()), "--result", str(result_file.resolve()),
                *self.extra_worker_args]
        plan = plan_job(self.config, args, self.python)
        env = {**os.environ, **plan.env}
        env["PYTHONPATH"] = _pythonpath()
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
            env.pop(key, None)  # the launcher sets them for its ranks
        logger.info("M-step: launching %s (%d node(s) x %s process(es)), log %s", self.config.launcher,
                    self.config.num_nodes, self.config.num_processes, log_file)
        t0 = time.perf_counter()
        with open(log_file, "w", encoding="utf-8") as log:
            log.write("".join(f"$ {shlex.join(c)}\n" for c in plan.commands))
            log.flush()
            # Its own process group, so a stop reaches every rank; the parent-death signal ends it with the driver.
            procs = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                      preexec_fn=_child_setup) for c in plan.commands]
            codes = self._wait(procs, remote=self._remote_stop(plan, result_file))
        seconds = time.perf_counter() - t0
        if any(codes):
            raise TrainJobFailed(f"the M-step job ({self.config.launcher}) exited with status {codes} after "
                                 f"{seconds:.0f} s; last lines of {log_file}:\n{_tail(log_file)}")
        missing = checkpoint_complete(output_dir) if output_dir.is_dir() else [f"the directory {output_dir}"]
        if missing or not result_file.exists():
            raise TrainJobFailed(f"the M-step job ({self.config.launcher}) exited 0 but left no complete checkpoint "
                                 f"(missing: {', '.join(missing) or result_file.name}); last lines of {log_file}:\n"
                                 f"{_tail(log_file)}")
        data = json.loads(result_file.read_text(encoding="utf-8"))
        logger.info("M-step job finished in %.0f s (training %.0f s in the job)", seconds, data["seconds"])
        return TrainResult(**{**data, "seconds": seconds})

    def _remote_stop(self, plan: JobPlan, result_file: Path) -> list[list[str]]:
        """Commands that stop the ranks of nodes i > 0 started through ``training.remote_shell``: killing the local
        ``ssh`` does not reach them. Their command line holds this job's unique result path."""
        if self.config.launcher not in ("torchrun", "accelerate") or len(plan.commands) < 2:
            return []
        hosts = read_hostfile(self.config.hostfile)
        pattern = shlex.quote(f"--result {result_file.resolve()}")
        return [[*shlex.split(self.config.remote_shell), host, f"pkill -TERM -f -- {pattern}"]
                for host, _ in hosts[1:len(plan.commands)]]

    @staticmethod
    def _wait(procs: list[subprocess.Popen], remote: Sequence[Sequence[str]] = (), grace_s: float = 10.0) -> list[int]:
        """Wait for every node's launcher; when one fails, stop the others (their peers would hang)."""
        try:
            while True:
                codes = [p.poll() for p in procs]
                if all(c is not None for c in codes):
                    return [int(c) for c in codes]
                if any(c not in (None, 0) for c in codes):
                    stop_process_groups(procs, remote, grace_s)
                    return [int(p.wait()) for p in procs]
                time.sleep(0.2)
        except BaseException:  # the driver is interrupted (Ctrl-C, SIGTERM): do not leave a training job behind
            logger.warning("M-step interrupted: stopping the launched job's process group(s)")
            stop_process_groups(procs, remote, grace_s)
            raise


def _child_setup() -> None:
    from rest_em.processes import set_parent_death_signal

    set_parent_death_signal()


def stop_process_groups(procs: Sequence[subprocess.Popen], remote: Sequence[Sequence[str]] = (),
                        grace_s: float = 10.0) -> None:
    """SIGTERM the process group of each launcher (torchrun passes it on to its ranks) and of the remote ranks, SIGKILL
    the groups still there after ``grace_s``. A group outlives its leader, so it is checked by its id."""
    import signal

    def group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    groups = [p.pid for p in procs]
    for pgid in groups:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGTERM)
    for cmd in remote:
        try:
            subprocess.run(list(cmd), timeout=30, capture_output=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("could not stop the remote ranks with %s: %s", shlex.join(cmd), exc)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        for p in procs:
            p.poll()  # reap the leader, so its group can empty
        if not any(group_alive(g) for g in groups):
            return
        time.sleep(0.1)
    for pgid in groups:
        if group_alive(pgid):
            logger.warning("process group %d did not stop within %.0f s of SIGTERM: SIGKILL", pgid, grace_s)
            os.killpg(pgid, signal.SIGKILL)
    for p in procs:
        p.wait()
