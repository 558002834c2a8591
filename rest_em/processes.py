"""The processes a run starts, and how none of them outlives it.

    claim_run_dir(run_dir)       # at run start: refuse a second live driver, stop what a killed run left, record us
    install_signal_handlers()    # SIGTERM/SIGINT end the driver through its `finally` blocks (engines closed)

- **A watchdog per driver** (``python -m rest_em.processes watch``, its own session, so a Ctrl-C to the
  terminal or a ``kill -9`` of the driver does not reach it). While the driver lives it notes the driver's
  descendants every ``poll_s`` (vLLM's EngineCore and workers, the launched M-step, a local Ray) and writes
  them to ``<run_dir>/processes.json``. When the driver is gone, for any reason, it sends SIGTERM to every
  one still running, SIGKILL after ``grace_s``, and exits. A descendant re-parented to init after a
  ``kill -9`` of the driver is found this way; the parent-death signal below alone could not: it reaches
  direct children only, and vLLM starts its own.
- **A parent-death signal** (``prctl(PR_SET_PDEATHSIG)``, Linux) on the processes rest-em starts itself
  (data-parallel engine processes, the launched job): they get SIGTERM as soon as their parent dies.
- **The record** ``processes.json`` (host, driver pid and start time, each descendant's pid, start time and
  command) lets a rerun find what a killed run left when its watchdog was killed too: a rerun stops
  those, says so, and refuses to start while the recorded driver is still alive on this host.

Processes are identified by ``(pid, start time)``, so a recycled pid is never signalled.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD = "processes.json"


class SecondDriver(RuntimeError):
    """Another ``rest-em iterate`` is running on this run directory."""


class Terminated(SystemExit):
    """SIGTERM reached the driver: unwinds through ``finally`` blocks like Ctrl-C does."""


# --------------------------------------------------------------------------- identity of a process


def _psutil():
    import psutil

    return psutil


def identity(pid: int) -> dict[str, Any] | None:
    """``{"pid", "create_time", "cmd"}`` of a live process, None when it is gone."""
    psutil = _psutil()
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return {"pid": pid, "create_time": p.create_time(), "cmd": " ".join(p.cmdline())[:200]}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(record: dict[str, Any]) -> bool:
    """True when the process of ``record`` still runs (same pid and the same start time)."""
    now = identity(int(record["pid"]))
    return now is not None and abs(now["create_time"] - float(record["create_time"])) < 0.01


def descendants(pid: int) -> list[dict[str, Any]]:
    psutil = _psutil()
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [r for r in (identity(c.pid) for c in children) if r is not None]


def stop(records: list[dict[str, Any]], grace_s: float = 5.0) -> list[dict[str, Any]]:
    """SIGTERM every live process of ``records``, SIGKILL those still there after ``grace_s``; returns those signalled."""
    targets = [r for r in records if alive(r)]
    for r in targets:
        try:
            os.kill(int(r["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(r) for r in targets):
        time.sleep(0.1)
    for r in targets:
        if alive(r):
            try:
                os.kill(int(r["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return targets


# --------------------------------------------------------------------------- parent-death signal


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread exits (Linux ``PR_SET_PDEATHSIG``);
    False where unsupported. Call it in the child, first thing (or as ``preexec_fn``)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0) != 0:
        return False
    # The parent may have died between fork and prctl: then we were already re-parented.
    return True


# --------------------------------------------------------------------------- the watchdog


def start_watchdog(pid: int | None = None, record: str | Path | None = None, poll_s: float = 0.5,
                   grace_s: float = 5.0) -> subprocess.Popen:
    """Start the watchdog of process ``pid`` (default: this one); it writes ``record`` when given."""
    pid = os.getpid() if pid is None else pid
    me = identity(pid)
    if me is None:
        raise RuntimeError(f"process {pid} is not running")
    cmd = [sys.executable, "-m", "rest_em.processes", "watch", "--pid", str(pid), "--create-time", repr(me["create_time"]),
           "--poll-s", str(poll_s), "--grace-s", str(grace_s)]
    if record is not None:
        cmd += ["--record", str(Path(record).resolve())]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env, close_fds=True)


def _write_record(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def watch(pid: int, create_time: float, record: Path | None, poll_s: float, grace_s: float) -> int:
    """The watchdog's loop (see the module docstring); returns the number of processes it had to stop."""
    me = {"pid": pid, "create_time": create_time}
    seen: dict[int, dict[str, Any]] = {}
    written = None
    base = json.loads(record.read_text(encoding="utf-8")) if record is not None and record.exists() else {}
    while alive(me):
        for r in descendants(pid):
            if r["pid"] != os.getpid():
                seen[r["pid"]] = r
        seen = {p: r for p, r in seen.items() if alive(r)}
        if record is not None and sorted(seen) != written:
            _write_record(record, {**base, "children": list(seen.values()), "watchdog": identity(os.getpid())})
            written = sorted(seen)
        time.sleep(poll_s)
    stopped = stop(list(seen.values()), grace_s)
    if record is not None:
        _write_record(record, {**base, "children": [r for r in seen.values() if alive(r)], "driver_ended": time.time(),
                               "stopped_by_watchdog": stopped})
    return len(stopped)


# --------------------------------------------------------------------------- the run directory


def claim_run_dir(run_dir: str | Path, watchdog: bool = True) -> subprocess.Popen | None:
    """At the start of a run: refuse when another driver runs on ``run_dir`` here, stop (and log) what a killed
    earlier run left behind, record this driver and start its watchdog (returned)."""
    path = Path(run_dir) / RECORD
    host = socket.gethostname()
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        driver = old.get("driver")
        if old.get("host") == host and driver and driver.get("pid") != os.getpid() and alive(driver):
            raise SecondDriver(f"another driver (pid {driver['pid']}: {driver.get('cmd', '?')}) is running on "
                               f"{run_dir}; stop it first, or use another run.name")
        if old.get("host") not in (None, host):
            logger.warning("%s was written by a run on host %s: its processes there are not checked from %s", path,
                           old.get("host"), host)
        else:
            leftovers = [r for r in [old.get("watchdog"), *old.get("children", [])] if r and alive(r)]
            if leftovers:
                stopped = stop(leftovers)
                logger.warning("stopped %d process(es) left running by an earlier run of %s: %s", len(stopped), run_dir,
                               "; ".join(f"pid {r['pid']} ({r.get('cmd', '?')[:80]})" for r in stopped))
    me = identity(os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_record(path, {"host": host, "driver": me, "started": time.time(), "children": []})
    if not watchdog:
        return None
    global _WATCHDOG
    if _WATCHDOG is not None and _WATCHDOG.poll() is None:  # one per driver process: a second run() replaces it
        _WATCHDOG.kill()
        _WATCHDOG.wait()
    _WATCHDOG = start_watchdog(record=path)
    return _WATCHDOG


_WATCHDOG: subprocess.Popen | None = None


# --------------------------------------------------------------------------- signals


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread (SIGINT already raises KeyboardInterrupt), so the
    driver's ``finally`` blocks run: samplers closed, a launched M-step's process groups stopped. Main thread only."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell: keep Ctrl-C effective
        signal.signal(signal.SIGINT, signal.default_int_handler)


def driver_start(run_dir: str | Path, cfg: Any = None) -> subprocess.Popen | None:
    """Everything a driver does once its run directory is open (``rest_em.loop.run``): SIGTERM/SIGINT handlers (main
    thread only), the run directory claimed (second driver refused, leftovers stopped, watchdog started) and, with
    ``cfg``, the GPUs each stage uses logged."""
    import threading

    if threading.current_thread() is threading.main_thread():
        install_signal_handlers()
    watchdog = claim_run_dir(run_dir)
    if cfg is not None:
        from rest_em.gpus import log_gpu_plan

        log_gpu_plan(cfg)
    return watchdog


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rest_em.processes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch", help="stop the descendants of --pid when it exits")
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--create-time", type=float, required=True)
    w.add_argument("--record", type=Path)
    w.add_argument("--poll-s", type=float, default=0.5)
    w.add_argument("--grace-s", type=float, default=5.0)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(args.pid, args.create_time, args.record, args.poll_s, args.grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
