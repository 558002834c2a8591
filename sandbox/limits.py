"""Resource limits: per container (cgroups, mounts, privileges) and per candidate process (rlimits).

``SandboxLimits`` is the single place where every number lives; ``container_kwargs`` turns it into the
Docker SDK's ``containers.create`` arguments, and ``process_limits`` into the dict the in-container
runner applies with ``setrlimit`` before it executes a candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RUNNER_ARGV = ["/usr/local/bin/python3", "-s", "-S", "/opt/sandbox/runner.py"]
LABEL = "rest-em.sandbox"  # every pool container carries it, so stale ones can be found and removed
SANDBOX_UID = "65534:65534"  # nobody:nogroup


@dataclass(frozen=True)
class SandboxLimits:
    """Hard limits for one container and the candidate processes it runs."""

    memory_mb: int = 512          # container memory and memory+swap (no swap escape)
    cpus: float = 1.0             # CPU quota per container
    pids: int = 64                # pids cgroup: bounds a fork bomb
    tmp_mb: int = 64              # /tmp tmpfs (the only writable directory besides /dev/shm)
    shm_mb: int = 16              # /dev/shm
    nofile: int = 64              # open files per candidate process
    fsize_mb: int = 16            # largest file a candidate may write
    output_bytes: int = 1 << 20   # stdout kept per test; more is an output_limit failure
    judge_memory_mb: int = 1024   # address space of the trusted judge process

    def __post_init__(self) -> None:
        for name in ("memory_mb", "pids", "tmp_mb", "shm_mb", "nofile", "fsize_mb", "output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)}")
        if self.cpus <= 0:
            raise ValueError(f"SandboxLimits.cpus must be positive, got {self.cpus}")


def container_kwargs(limits: SandboxLimits, image: str, labels: dict[str, str], cgroup_parent: str = "") -> dict[str, Any]:
    """Arguments for ``client.containers.create``: every hardening option in one place.

    ``cgroup_parent="/"`` (cgroupfs driver) makes each container a top-level cgroup. Under Docker's
    default ``/docker`` parent, all containers together weigh as much as *one* host process in the CPU
    scheduler, so on a busy machine a pool of N containers gets far less CPU than N worker processes.
    """
    from docker.types import LogConfig, Ulimit

    mem = f"{limits.memory_mb}m"
    extra = {"cgroup_parent": cgroup_parent} if cgroup_parent else {}
    return {
        **extra,
        "image": image,
        "command": RUNNER_ARGV,
        "stdin_open": True,            # jobs arrive on the runner's stdin through an attach socket
        "tty": False,
        "user": SANDBOX_UID,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={limits.tmp_mb}m,mode=1777"},
        "shm_size": f"{limits.shm_mb}m",
        "ipc_mode": "private",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": mem,
        "memswap_limit": mem,          # equal: the container cannot swap its way past the limit
        "pids_limit": limits.pids,
        "nano_cpus": int(limits.cpus * 1e9),
        "ulimits": [
            Ulimit(name="nofile", soft=256, hard=256),
            Ulimit(name="fsize", soft=limits.fsize_mb << 20, hard=limits.fsize_mb << 20),
            Ulimit(name="core", soft=0, hard=0),
        ],
        # Without this a program printing in a loop fills the host's disk with container logs.
        "log_config": LogConfig(type="none"),
        "labels": labels,
        "working_dir": "/tmp",
        "detach": True,
        "auto_remove": False,
        "init": False,                 # the runner itself is PID 1 and reaps everything
    }


def process_limits(limits: SandboxLimits, test_timeout_s: float, problem_timeout_s: float) -> dict[str, Any]:
    """The runner's per-job limits: rlimits of the candidate and the wall deadlines."""
    return {
        "as_mb": limits.memory_mb,
        # CPU seconds for the whole candidate process; the wall deadlines are the precise ones.
        "cpu_s": max(1, math.ceil(problem_timeout_s) + 1),
        "fsize_mb": limits.fsize_mb,
        "nofile": limits.nofile,
        "output_bytes": limits.output_bytes,
        "test_timeout_s": test_timeout_s,
        "problem_timeout_s": problem_timeout_s,
        "judge_as_mb": limits.judge_memory_mb,
    }
