"""A pool of warm, hardened containers, each running ``runner.py`` as PID 1.

    with SandboxPool(PoolConfig(size=2)) as pool:
        result = pool.run({"kind": "exec", "source": "print(input())", "inputs": ["hi\\n"], "limits": ...},
                          timeout_s=10)

One job at a time per container, over the container's stdin/stdout (an attach socket: no ``docker exec``,
no HTTP round trip per job). Each job carries a fresh random marker; a reply without it is rejected.
A container is replaced when its runner dies, when it hits its memory limit, when it misses the host's
deadline for a job, when it cannot wipe its scratch space, and after ``recycle_after`` jobs.
Containers carry the ``rest-em.sandbox`` label and their owner's host:pid, so containers left by a
crashed process are found and removed by the next pool (``remove_stale_containers``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import secrets
import socket
import struct
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sandbox.limits import LABEL, SandboxLimits, container_kwargs

log = logging.getLogger(__name__)

OWNER_LABEL = "rest-em.owner"   # "<hostname>:<pid>" of the process that made the container
POOL_LABEL = "rest-em.pool"


class SandboxUnavailable(RuntimeError):
    """No Docker engine, no image, or containers cannot be started."""


class SandboxError(RuntimeError):
    """A container broke while running a job (runner died, protocol violated, host deadline missed)."""

    def __init__(self, message: str, *, oom: bool = False, timeout: bool = False) -> None:
        super().__init__(message)
        self.oom = oom
        self.timeout = timeout


@dataclass(frozen=True)
class PoolConfig:
    """How many containers, how they are limited, and when they are replaced."""

    size: int = 0                     # 0: one container per CPU core
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    recycle_after: int = 1000         # jobs per container before it is replaced anyway
    image: str | None = None          # None: build or reuse the content-hashed image
    image_method: str = "offline"     # or "dockerfile" where base images can be pulled
    start_timeout_s: float = 60.0
    # None: "/" with the cgroupfs driver (each container weighs like one host process in the CPU
    # scheduler, see limits.container_kwargs), Docker's default parent otherwise.
    cgroup_parent: str | None = None
    host_grace_s: float = 5.0         # the host's deadline = the job's own budget + this

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"PoolConfig.size must be >= 0, got {self.size}")
        if self.recycle_after < 1:
            raise ValueError(f"PoolConfig.recycle_after must be >= 1, got {self.recycle_after}")

    @property
    def resolved_size(self) -> int:
        return self.size or max(1, os.cpu_count() or 1)


def docker_client(timeout_s: float = 60.0) -> Any:
    """A connected Docker client, or ``SandboxUnavailable`` saying why not."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxUnavailable(f"the Docker SDK is not installed (pip install -e '.[sandbox]'): {exc}") from exc
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:
        raise SandboxUnavailable(f"no Docker engine answers: {exc}") from exc
    return client


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def remove_stale_containers(client: Any) -> int:
    """Remove sandbox containers whose owning process on this host is gone (it crashed or was killed
    before its ``close``). Containers of live processes, and of other hosts, are left alone."""
    host = socket.gethostname()
    removed = 0
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        owner_host, _, pid = c.labels.get(OWNER_LABEL, ":").rpartition(":")
        if owner_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # the owner is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, under another user
        try:
            c.remove(force=True)
            removed += 1
        except Exception as exc:  # another process may be removing it too
            log.debug("could not remove stale container %s: %s", c.short_id, exc)
    if removed:
        log.info("removed %d stale sandbox container(s)", removed)
    return removed


class _Warm:
    """One running container and its attach socket; used by one thread at a time."""

    def __init__(self, container: Any, sock: Any) -> None:
        self.container = container
        self._io = sock  # keep the SocketIO (and its HTTP response) alive
        self.sock: socket.socket = getattr(sock, "_sock", sock)
        self.buf = bytearray()
        self.stderr_tail = bytearray()
        self.jobs = 0

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError("the runner missed the host deadline", timeout=True)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(out))
            except socket.timeout:
                raise SandboxError("the runner missed the host deadline", timeout=True) from None
            if not chunk:
                raise SandboxError("the runner closed its output (the container stopped)")
            out += chunk
        return bytes(out)

    def read_line(self, deadline: float) -> bytes:
        # Docker multiplexes stdout and stderr: 8-byte header (stream, 0, 0, 0, big-endian length).
        while b"\n" not in self.buf:
            stream, length = struct.unpack(">BxxxL", self._recv_exact(8, deadline))
            payload = self._recv_exact(length, deadline)
            if stream == 2:
                self.stderr_tail = (self.stderr_tail + payload)[-4000:]
            else:
                self.buf += payload
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return line

    def send(self, data: bytes) -> None:
        self.sock.settimeout(30)
        self.sock.sendall(data)


class SandboxPool:
    """Warm containers for untrusted code; thread-safe ``run``."""

    def __init__(self, config: PoolConfig | None = None, client: Any = None) -> None:
        self.config = config or PoolConfig()
        self.client = client or docker_client()
        self.pool_id = uuid.uuid4().hex[:12]
        self._idle: queue.Queue[_Warm] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._all: set[_Warm] = set()
        self.stats = {"jobs_run": 0, "started": 0, "replaced": 0, "recycled": 0, "oom": 0, "host_timeouts": 0}
        if self.config.image:
            self.image = self.config.image
        else:
            from sandbox.image import ImageBuildError, ensure_image

            try:
                self.image = ensure_image(self.client, method=self.config.image_method)
            except ImageBuildError as exc:
                raise SandboxUnavailable(str(exc)) from exc
        remove_stale_containers(self.client)
        self.cgroup_parent = self.config.cgroup_parent
        if self.cgroup_parent is None:
            try:
                driver = self.client.info().get("CgroupDriver", "")
            except Exception:
                driver = ""
            self.cgroup_parent = "/" if driver == "cgroupfs" else ""
        size = self.config.resolved_size
        with ThreadPoolExecutor(max_workers=size) as ex:
            warm = list(ex.map(lambda _: self._start_safe(), range(size)))
        errors = [w for w in warm if isinstance(w, Exception)]
        for w in warm:
            if not isinstance(w, Exception):
                self._idle.put(w)
        if errors and len(errors) == size:
            self.close()
            raise SandboxUnavailable(f"no sandbox container could be started: {errors[0]}")
        _live_pools.add(self)
        log.info("sandbox pool %s: %d container(s) of %s", self.pool_id, size - len(errors), self.image)

    # ------------------------------------------------------------------------------ containers

    def _start_safe(self) -> _Warm | Exception:
        try:
            return self._start()
        except Exception as exc:
            log.warning("could not start a sandbox container: %s", exc)
            return exc

    def _start(self) -> _Warm:
        labels = {LABEL: "1", OWNER_LABEL: _owner(), POOL_LABEL: self.pool_id}
        container = self.client.containers.create(
            **container_kwargs(self.config.limits, self.image, labels, cgroup_parent=self.cgroup_parent))
        try:
            # Attach before start so the runner's first line cannot be missed.
            sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
            warm = _Warm(container, sock)
            hello = json.loads(warm.read_line(time.monotonic() + self.config.start_timeout_s))
            if not hello.get("ready"):
                raise SandboxError(f"unexpected hello from the runner: {hello!r}")
        except Exception:
            self._remove(container)
            raise
        with self._lock:
            self._all.add(warm)
            self.stats["started"] += 1
        return warm

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except Exception as exc:
            log.debug("removing container %s: %s", getattr(container, "short_id", "?"), exc)

    def _retire(self, warm: _Warm, why: str) -> None:
        with self._lock:
            self._all.discard(warm)
            self.stats["recycled" if why == "recycle" else "replaced"] += 1
        try:
            warm.sock.close()
        except OSError:
            pass
        # Removal takes a few hundred ms; it need not hold up the next job.
        threading.Thread(target=self._remove, args=(warm.container,), daemon=True).start()

    def _replace(self, warm: _Warm, why: str) -> None:
        log.debug("replacing container %s (%s)", warm.container.short_id, why)
        self._retire(warm, why)
        if self._closed:
            return
        new = self._start_safe()
        if isinstance(new, Exception):
            # Keep the pool's size: try again on the next acquire instead of shrinking forever.
            self._idle.put(None)  # type: ignore[arg-type]
        else:
            self._idle.put(new)

    def _acquire(self) -> _Warm:
        while True:
            if self._closed:
                raise SandboxUnavailable("the sandbox pool is closed")
            warm = self._idle.get()
            if warm is not None:
                return warm
            new = self._start_safe()
            if isinstance(new, Exception):
                self._idle.put(None)  # type: ignore[arg-type]
                raise SandboxUnavailable(f"no sandbox container could be started: {new}")
            return new

    def _oom_killed(self, warm: _Warm) -> bool:
        try:
            warm.container.reload()
            return bool(warm.container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:
            return False

    # ------------------------------------------------------------------------------------ jobs

    def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run one job; ``timeout_s`` is the job's own budget, the host adds ``host_grace_s``.

        Returns the runner's reply. Raises ``SandboxError`` (``.oom``/``.timeout`` set when the
        candidate caused it) after replacing the container, or ``SandboxUnavailable``."""
        warm = self._acquire()
        marker = secrets.token_hex(16)
        payload = json.dumps({**job, "marker": marker}, separators=(",", ":")).encode() + b"\n"
        deadline = time.monotonic() + timeout_s + self.config.host_grace_s
        try:
            warm.send(payload)
            reply = json.loads(warm.read_line(deadline))
        except SandboxError as exc:
            if exc.timeout:
                with self._lock:
                    self.stats["host_timeouts"] += 1
                self._kill(warm)
                self._replace(warm, "host deadline")
                raise
            oom = self._oom_killed(warm)
            if oom:
                with self._lock:
                    self.stats["oom"] += 1
            tail = warm.stderr_tail.decode("utf-8", "replace")[-500:]
            self._replace(warm, "oom" if oom else "runner died")
            raise SandboxError(f"{exc}{'; memory limit' if oom else ''}; runner stderr: {tail}", oom=oom) from None
        except (OSError, ValueError) as exc:
            self._replace(warm, "protocol")
            raise SandboxError(f"the sandbox connection broke: {exc}") from None
        warm.jobs += 1
        with self._lock:
            self.stats["jobs_run"] += 1
        if reply.get("marker") != marker:
            self._replace(warm, "marker")
            raise SandboxError("the runner's reply did not carry this job's marker")
        if reply.get("dirty"):
            self._replace(warm, "dirty scratch")
        elif warm.jobs >= self.config.recycle_after:
            self._replace(warm, "recycle")
        else:
            self._idle.put(warm)
        return reply

    def _kill(self, warm: _Warm) -> None:
        try:
            warm.container.kill()
        except Exception as exc:
            log.debug("kill %s: %s", warm.container.short_id, exc)

    def health(self) -> dict[str, Any]:
        """Pool state for dashboards and tests."""
        alive = 0
        with self._lock:
            members = list(self._all)
            stats = dict(self.stats)
        for w in members:
            try:
                w.container.reload()
                alive += w.container.status == "running"
            except Exception:
                pass
        return {"image": self.image, "size": self.config.resolved_size, "alive": alive, "closed": self._closed, **stats}

    def close(self) -> None:
        """Remove every container of this pool. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            members = list(self._all)
            self._all.clear()
        for w in members:
            try:
                w.sock.close()
            except OSError:
                pass
            self._remove(w.container)
        try:  # anything of ours that a failed start left behind
            for c in self.client.containers.list(all=True, filters={"label": f"{POOL_LABEL}={self.pool_id}"}):
                self._remove(c)
        except Exception:
            pass
        _live_pools.discard(self)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_live_pools: "weakref.WeakSet[SandboxPool]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_live_pools):
        try:
            pool.close()
        except Exception:
            pass
