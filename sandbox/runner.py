"""The in-container PID 1: takes one job at a time on stdin, answers one JSON line on stdout.

    python3 -s -S /opt/sandbox/runner.py        (the container's command; see sandbox/pool.py)

Protocol (one JSON object per line, both ways):

    <- {"ready": true, "pid": 1, "python": "3.11.7"}                       once, at start
    -> {"marker": M, "kind": "exec",  "source": ..., "inputs": [...], "limits": {...}}
    -> {"marker": M, "kind": "judge", "source": ..., "prelude": ..., "proxies": [...],
        "tests": [{"code": ...} | {"call": name, "args": <wire>}], "limits": {...}}
    <- {"marker": M, "tests": [...], "load": {...}, "stop": ..., "candidate": {...}}

``exec`` runs the program once per input and returns its stdout (the host compares it).  ``judge`` runs
the candidate in a fresh interpreter (``guest.py``) and the trusted test code in a forked judge process
that reaches the candidate only through wire-encoded calls, so the candidate can neither see the tests
nor touch the process that decides whether they passed.

Why this process is trustworthy while untrusted code runs beside it under the same uid:
* it is PID 1 of the container's pid namespace, so signals from inside (``kill -9 -1`` included) that it
  has no handler for never reach it;
* it is marked non-dumpable, so the candidate cannot ptrace it or open ``/proc/1/mem``, ``/proc/1/fd/*``
  or ``/proc/1/environ``: the marker, the job and the stdout that leads to the host stay out of reach;
* after every job it kills every other process (``kill(-1)``), reaps them and wipes ``/tmp`` and
  ``/dev/shm``, so nothing outlives a job.

Standard library only: this file runs inside the image's bare interpreter.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wire  # noqa: E402

PYTHON = sys.executable
# -s -S: no user or site directories (numpy lives in the stdlib directory of the image); the runner
# builds the child's environment from scratch, so -E is not needed and PYTHONHASHSEED applies.
PY_FLAGS = ["-s", "-S", "-B"]
# Imported, not run as a script: a script is compiled on every start, an imported module is loaded
# from the byte-code the image ships (the read-only root cannot cache it).
GUEST_MAIN = f"import sys; sys.path.insert(0, {HERE!r}); import guest; guest.serve(3, 4)"
SCRATCH_DIRS = ("/tmp", "/dev/shm")
PR_SET_DUMPABLE = 4
JUDGE_PRELOAD = ("ast", "base64", "marshal", "traceback", "typing", "math", "collections", "itertools", "functools", "re", "random", "string",
                 "heapq", "bisect", "copy", "fractions", "decimal", "statistics", "hashlib")
STDERR_TAIL = 4096
POLL_S = 0.05   # how often a running program's exit is checked while its pipes stay open
DRAIN_S = 0.05  # how long output is still collected after the program exited
KILL = signal.SIGKILL


def _child_env(extra: dict | None = None) -> dict:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # same output for the same program on every run
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One BLAS thread: the CPU quota is per container and threads only add start-up cost.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    if "LD_LIBRARY_PATH" in os.environ:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    env.update(extra or {})
    return env


def _set_limits(limits: dict) -> None:
    mb = 1024 * 1024
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["as_mb"] * mb, limits["as_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_mb"] * mb, limits["fsize_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def spawn(argv: list[str], limits: dict, stdin_fd: int, stdout_fd: int, stderr_fd: int,
          keep_fds: tuple[int, ...] = (), cwd: str = "/tmp") -> int:
    """fork + exec with the job's rlimits, in a new session; ``keep_fds`` become fds 3, 4, ..."""
    env = _child_env()
    pid = os.fork()
    if pid:
        return pid
    try:  # child: never return into the runner's code
        os.setsid()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in keep_fds]
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)
        os.closerange(3 + len(high), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(cwd)
        _set_limits(limits)
        os.execve(argv[0], argv, env)
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode()[-STDERR_TAIL:])
        finally:
            os._exit(127)
    os._exit(127)


class Capture:
    """Reads one pipe into a capped buffer; past the cap it just counts."""

    def __init__(self, fd: int, cap: int, keep_tail: bool = False) -> None:
        self.fd, self.cap, self.keep_tail = fd, cap, keep_tail
        self.buf = bytearray()
        self.total = 0
        self.eof = False
        os.set_blocking(fd, False)

    def pump(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
            return
        self.total += len(data)
        self.buf += data
        if self.keep_tail:
            del self.buf[:-STDERR_TAIL]
        elif len(self.buf) > self.cap:
            del self.buf[self.cap:]

    @property
    def over(self) -> bool:
        return not self.keep_tail and self.total > self.cap

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _wait_status(pid: int) -> dict | None:
    """Non-blocking: the exit of ``pid`` as a dict, or None while it runs."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return {"exit": None, "signal": None}
    if not got:
        return None
    if os.WIFSIGNALED(status):
        return {"exit": None, "signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status), "signal": None}


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, KILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(status: dict, stderr: str, killed_for: str | None) -> str:
    """What happened to a finished candidate: ok, timeout, output_limit, memory, runtime_error."""
    if killed_for:
        return killed_for
    sig = status.get("signal")
    if sig == signal.SIGXCPU:
        return "timeout"
    if sig == signal.SIGXFSZ:
        return "output_limit"
    if "MemoryError" in stderr or sig == KILL:
        # SIGKILL that we did not send comes from the memory cgroup's OOM killer.
        return "memory"
    if sig is not None or status.get("exit") != 0:
        return "runtime_error"
    return "ok"


# ---------------------------------------------------------------------------------------- exec jobs

def run_exec(job: dict) -> dict:
    limits = job["limits"]
    workdir = "/tmp/job"
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "main.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(job["source"])
    t_problem = time.monotonic() + limits["problem_timeout_s"]
    results = []
    for i, stdin_text in enumerate(job["inputs"]):
        res = _run_once([PYTHON, *PY_FLAGS, path], stdin_text.encode("utf-8"), limits, t_problem, workdir)
        res["i"] = i
        results.append(res)
        _kill_others()  # a daemon from test i must not answer for test i+1
        if res["status"] != "ok":
            break
    return {"tests": results}


def _run_once(argv: list[str], stdin_data: bytes, limits: dict, t_problem: float, cwd: str) -> dict:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = spawn(argv, limits, in_r, out_w, err_w, cwd=cwd)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    out = Capture(out_r, limits["output_bytes"])
    err = Capture(err_r, STDERR_TAIL, keep_tail=True)
    os.set_blocking(in_w, False)
    pending = memoryview(stdin_data)
    if not len(pending):
        os.close(in_w)
        in_w = -1
    deadline = min(time.monotonic() + limits["test_timeout_s"], t_problem)
    killed_for = None
    status = None
    drain_until = None
    t0 = time.monotonic()
    while True:
        rfds = [c.fd for c in (out, err) if not c.eof]
        if status is None:
            status = _wait_status(pid)
            if status is not None:
                # The program is done; a process it left behind may hold its stdout open, so
                # collect what is already written and stop (it is killed with everything else).
                drain_until = time.monotonic() + DRAIN_S
        if not rfds or (drain_until is not None and time.monotonic() >= drain_until):
            break
        now = time.monotonic()
        if now >= deadline:
            killed_for = "timeout"
            break
        # Wake up now and then to notice the program's exit while a descendant keeps the pipes open.
        timeout = min(deadline, drain_until or now + POLL_S) - now
        wfds = [in_w] if in_w >= 0 else []
        r, w, _ = select.select(rfds, wfds, [], max(0.0, timeout))
        for c in (out, err):
            if c.fd in r:
                c.pump()
        if out.over:
            killed_for = "output_limit"
            break
        if in_w in w:
            try:
                n = os.write(in_w, pending[: 1 << 16])
                pending = pending[n:]
            except BlockingIOError:
                pass
            except BrokenPipeError:  # the program stopped reading its input: not our problem
                pending = pending[:0]
        if in_w >= 0 and not len(pending):
            os.close(in_w)
            in_w = -1
    if status is None and killed_for is None:
        # Both pipes closed: the program is exiting; wait for it within the deadline.
        status = _wait_blocking_until(pid, deadline)
        if status is None:
            killed_for = "timeout"
    if in_w >= 0:
        os.close(in_w)
    if status is None:
        _kill_session(pid)
        status = _reap_killed(pid)
    out.close()
    err.close()
    stderr = err.text()
    return {
        "status": _classify(status, stderr, killed_for),
        "stdout": out.text(),
        "stderr": stderr[-1000:],
        "exit": status.get("exit"),
        "signal": status.get("signal"),
        "elapsed_s": round(time.monotonic() - t0, 4),
    }


def _reap_killed(pid: int) -> dict:
    """Wait for a process we just sent SIGKILL (it cannot resist, so a blocking wait is safe)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return {"exit": None, "signal": KILL}
    if os.WIFSIGNALED(status):
        return {"exit": None, "signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status), "signal": None}


def _wait_blocking_until(pid: int, deadline: float) -> dict | None:
    while True:
        st = _wait_status(pid)
        if st is not None:
            return st
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.0005)


# --------------------------------------------------------------------------------------- judge jobs

class CandidateGone(Exception):
    """The candidate process closed its end: it exited, crashed or was killed."""


class RemoteError(Exception):
    """The candidate's code raised; ``kind`` is the exception's type name."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(f"{kind}: {msg[-500:]}")
        self.kind = kind


class Remote:
    """The judge's end of the RPC channel to the candidate."""

    def __init__(self, req_fd: int, rep_fd: int) -> None:
        self.req = os.fdopen(req_fd, "wb", buffering=1 << 16)
        self.rep = os.fdopen(rep_fd, "rb", buffering=1 << 16)

    def send(self, msg: dict) -> dict:
        try:
            self.req.write(wire.dumps_request(msg))
            self.req.flush()
        except (BrokenPipeError, OSError):
            raise CandidateGone("the program exited before answering") from None
        line = self.rep.readline(wire.MAX_MESSAGE_BYTES + 1)
        if not line.endswith(b"\n"):
            raise CandidateGone("the program exited before answering" if not line else "reply too large")
        try:
            reply = wire.loads(line)
        except ValueError:
            raise CandidateGone("the program sent a malformed reply") from None
        if type(reply) is not dict:
            raise CandidateGone("the program sent a malformed reply")
        return reply

    def call(self, ref, args: tuple, kwargs: dict):
        reply = self.send({"op": "call", "ref": ref, "args": wire.encode(list(args)), "kwargs": wire.encode(dict(kwargs))})
        if "ok" in reply:
            try:
                return wire.decode(reply["ok"], make_handle=lambda n: wire.Handle(n, self))
            except (ValueError, TypeError):
                raise CandidateGone("the program sent a malformed value") from None
        raise RemoteError(str(reply.get("raise", "Error"))[:100], str(reply.get("msg", "")))


# Modules a test may use through the candidate's own ``import`` (MBPP tests call ``sys.getsizeof``,
# ``math.isclose``, ...): the judge imports its own copy instead of calling into the candidate.
SHARED_MODULES = frozenset({"sys", "math", "cmath", "re", "collections", "itertools", "functools", "heapq", "bisect",
                            "string", "operator", "copy", "random", "statistics", "decimal", "fractions", "array",
                            "datetime", "typing", "numpy"})


def _bind_names(job: dict, ns: dict, remote: Remote, load_reply: dict) -> None:
    """Bind the names the tests use: the candidate's functions and classes become proxies, modules it
    imported become the judge's own imports of the same (allow-listed) modules."""
    import builtins

    defined = set(load_reply.get("names") or ())
    modules = load_reply.get("modules") or {}
    for name in job.get("proxies", []):
        if name in ns and not job.get("override_prelude", True):
            continue  # the problem's own set-up code defined it
        module = modules.get(name) if type(modules) is dict else None
        if type(module) is str and module in SHARED_MODULES:
            try:
                ns[name] = __import__(module)
                continue
            except ImportError:
                pass
        if name in defined or name in job.get("force_proxies", ()) or (name not in ns and not hasattr(builtins, name)):
            ns[name] = wire.Handle(name, remote)  # calls send the name; the guest resolves it


def run_judge_process(job: dict, remote: Remote, events_fd: int) -> None:
    """Runs in a child forked from the runner: trusted test code, candidate reachable only via RPC."""
    ev = os.fdopen(events_fd, "wb", buffering=1 << 16)
    try:
        _judge(job, remote, ev)
    finally:
        ev.flush()


def _judge(job: dict, remote: Remote, ev) -> None:
    def emit(**msg) -> None:
        # JSON (C-accelerated) between the two trusted processes; bytes travel as base64. Sent when
        # a test begins (the runner starts its deadline) or the judge is done: one wake-up, not four.
        ev.write(json.dumps(wire.to_json(msg), separators=(",", ":")).encode() + b"\n")
        if msg["ev"] in ("begin", "done"):
            ev.flush()

    ns: dict = {"__name__": "__judge__"}
    try:
        exec(_compiled(job.get("prelude", ""), "<prelude>"), ns)
    except BaseException as exc:
        emit(ev="load", status="harness_error", msg=f"prelude: {type(exc).__name__}: {exc}")
        return
    try:
        reply = remote.send({"op": "load", "source": job["source"]})
    except CandidateGone as exc:
        emit(ev="load", status="exited", msg=str(exc))
        return
    if reply.get("load") != "ok":
        emit(ev="load", status=str(reply.get("load", "runtime_error")),
             msg=str(reply.get("msg", ""))[-2000:], error=str(reply.get("raise", "")))
        return
    emit(ev="load", status="ok")
    _bind_names(job, ns, remote, reply)
    for i, test in enumerate(job["tests"]):
        emit(ev="begin", i=i)
        try:
            if "call" in test:
                value = remote.call(test["call"], tuple(wire.decode(wire.from_json(test["args"]))), {})
                try:
                    emit(ev="end", i=i, status="ok", value=wire.encode(value))
                except wire.Unencodable:
                    emit(ev="end", i=i, status="ok", unencodable=True)
            else:
                exec(_compiled(test["code"], f"<test {i}>"), ns)
                emit(ev="end", i=i, status="ok")
        except AssertionError as exc:
            emit(ev="end", i=i, status="wrong_answer", msg=str(exc)[:500])
            return
        except RemoteError as exc:
            emit(ev="end", i=i, status="runtime_error", error=exc.kind, msg=str(exc)[-1000:])
            return
        except CandidateGone as exc:
            emit(ev="end", i=i, status="exited", msg=str(exc))
            return
        except RecursionError as exc:
            emit(ev="end", i=i, status="wrong_answer", msg=f"RecursionError: {exc}"[:500])
            return
        except Exception as exc:
            # The test's own code failed on what the candidate returned (None where a number was
            # expected, a handle compared with a list, ...): the candidate's answer was wrong.
            emit(ev="end", i=i, status="wrong_answer", msg=f"{type(exc).__name__}: {exc}"[:500])
            return
    emit(ev="done")


_CODE_CACHE: dict = {}
_CODE_CACHE_SIZE = 512


def _compiled(source: str, name: str):
    """Compiled trusted test code, cached: ReST-EM verifies many samples of the same problem, and
    the runner compiles before forking the judge, so the judge inherits the code objects."""
    key = (source, name)
    code = _CODE_CACHE.get(key)
    if code is None:
        code = compile(source, name, "exec")
        if len(_CODE_CACHE) >= _CODE_CACHE_SIZE:
            _CODE_CACHE.pop(next(iter(_CODE_CACHE)))
        _CODE_CACHE[key] = code
    return code


def _precompile(job: dict) -> None:
    try:
        _compiled(job.get("prelude", ""), "<prelude>")
        for i, test in enumerate(job["tests"]):
            if "code" in test:
                _compiled(test["code"], f"<test {i}>")
    except SyntaxError:
        pass  # reported by the judge, where the same compile fails again


def run_judge(job: dict) -> dict:
    limits = job["limits"]
    _precompile(job)
    c_req_r, j_req_w = os.pipe()   # judge -> candidate
    j_rep_r, c_rep_w = os.pipe()   # candidate -> judge
    ev_r, ev_w = os.pipe()         # judge -> runner
    judge_pid = os.fork()
    if judge_pid == 0:
        code = 0
        try:
            for fd in (c_req_r, c_rep_w, ev_r):
                os.close(fd)
            # The judge must never write to the container's stdout: that is the channel to the host.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            mb = 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limits["judge_as_mb"] * mb,) * 2)
            run_judge_process(job, Remote(j_req_w, j_rep_r), ev_w)
        except BaseException:
            code = 1
            try:
                os.write(ev_w, json.dumps({"ev": "crash", "msg": traceback.format_exc()[-2000:]}).encode() + b"\n")
            except OSError:
                pass
        finally:
            os._exit(code)
    for fd in (j_req_w, j_rep_r, ev_w):
        os.close(fd)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    cand = spawn([PYTHON, *PY_FLAGS, "-c", GUEST_MAIN], limits, null, out_w, err_w, keep_fds=(c_req_r, c_rep_w))
    for fd in (null, out_w, err_w, c_req_r, c_rep_w):
        os.close(fd)
    return _drive_judge(judge_pid, cand, ev_r, out_r, err_r, limits)


def _drive_judge(judge_pid: int, cand: int, ev_r: int, out_r: int, err_r: int, limits: dict) -> dict:
    out = Capture(out_r, limits["output_bytes"])
    err = Capture(err_r, STDERR_TAIL, keep_tail=True)
    events = Capture(ev_r, wire.MAX_MESSAGE_BYTES)
    t_problem = time.monotonic() + limits["problem_timeout_s"]
    deadline = t_problem
    result: dict = {"tests": [], "load": None, "stop": None}
    current = None
    lines = bytearray()
    cand_status = None
    while True:
        rfds = [c.fd for c in (out, err, events) if not c.eof]
        if events.eof:
            break
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            result["stop"] = "timeout"
            if current is not None:
                result["tests"].append({"i": current, "status": "timeout"})
            break
        r, _, _ = select.select(rfds, [], [], timeout)
        for c in (out, err):
            if c.fd in r:
                c.pump()
        if out.over:
            result["stop"] = "output_limit"
            break
        if events.fd in r:
            before = len(events.buf)
            events.pump()
            lines += events.buf[before:]
            del events.buf[:]
            while b"\n" in lines:
                raw, _, rest = bytes(lines).partition(b"\n")
                lines[:] = rest
                msg = json.loads(raw)
                if msg["ev"] == "load":
                    result["load"] = msg
                elif msg["ev"] == "begin":
                    current = msg["i"]
                    deadline = min(time.monotonic() + limits["test_timeout_s"], t_problem)
                elif msg["ev"] == "end":
                    current = None
                    deadline = t_problem
                    msg.pop("ev")
                    result["tests"].append(msg)
                    if msg["status"] != "ok":
                        result["stop"] = "failed"
                elif msg["ev"] == "crash":
                    result["stop"] = "harness_crash"
                    result["crash"] = msg.get("msg", "")
                elif msg["ev"] == "done":
                    result["stop"] = "done"
            if result["stop"] is not None:
                break
            if result["load"] is not None and result["load"].get("status") != "ok":
                result["stop"] = "load_failed"
                break
    # Give a dying candidate a moment so its exit status (OOM kill, MemoryError) can be reported.
    if result["stop"] is None or any(t.get("status") in ("exited", "runtime_error") for t in result["tests"]) \
            or (result["load"] or {}).get("status") in ("exited", "runtime_error"):
        cand_status = _wait_blocking_until(cand, time.monotonic() + 0.2)
    # Only a death we did not cause can be the memory cgroup's OOM kill.
    died_alone = cand_status is not None
    _kill_session(cand)
    if cand_status is None:
        cand_status = _reap_killed(cand)
    while not err.eof:
        r, _, _ = select.select([err.fd], [], [], 0.05)
        if not r:
            break
        err.pump()
    judge_status = _wait_status(judge_pid)
    if judge_status is None:
        try:  # the judge shares the runner's process group: signal it alone
            os.kill(judge_pid, KILL)
        except ProcessLookupError:
            pass
        judge_status = _reap_killed(judge_pid)
    for c in (out, err, events):
        c.close()
    if result["stop"] is None and judge_status and judge_status.get("signal"):
        # Only the candidate (same uid) or the OOM killer kills a judge we did not kill ourselves.
        result["stop"] = "judge_killed"
    elif result["stop"] is None:
        result["stop"] = "harness_crash"
        result["crash"] = f"judge exited without a report: {judge_status}"
    stderr = err.text()
    result["candidate"] = {**cand_status, "stderr": stderr[-1000:],
                           "memory": "MemoryError" in stderr or (died_alone and cand_status.get("signal") == KILL),
                           "stdout_bytes": out.total}
    return result


# ------------------------------------------------------------------------------------------- cleanup

def _kill_others() -> None:
    """SIGKILL every process but this one and reap them, until none is left."""
    for _ in range(1000):
        try:
            os.kill(-1, KILL)
            signalled = True
        except ProcessLookupError:
            signalled = False
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if signalled else os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            reaped = True
        if not signalled and not reaped:
            return


def _wipe(root: str) -> None:
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                for dirpath, dirnames, _ in os.walk(path):
                    for d in dirnames:  # a candidate may have made a directory unwritable
                        try:
                            os.chmod(os.path.join(dirpath, d), 0o700)
                        except OSError:
                            pass
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def cleanup() -> list[str]:
    """Kill, reap, wipe; returns what could not be wiped (the host replaces such a container)."""
    _kill_others()
    left = []
    for root in SCRATCH_DIRS:
        try:
            _wipe(root)
            left += [os.path.join(root, n) for n in os.listdir(root)]
        except OSError as exc:
            left.append(f"{root}: {exc}")
    return left


# ---------------------------------------------------------------------------------------------- main

def _set_nondumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main() -> int:
    _set_nondumpable()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    # Loaded once here, so that forked judges neither parse replies nor run test preludes
    # (``from typing import List`` costs ~10 ms in a fresh interpreter) with an import on every job.
    for name in JUDGE_PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    # Everything loaded so far is permanent: the collector never walks it in a forked judge, so
    # the judge does not copy-on-write fault the runner's whole heap.
    gc.collect()
    gc.freeze()

    stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "python": sys.version.split()[0]}).encode() + b"\n")
    stdout.flush()
    jobs = 0
    while True:
        line = stdin.readline()
        if not line:
            return 0
        t0 = time.monotonic()
        job = json.loads(line)
        marker = job.get("marker", "")
        try:
            if job["kind"] == "exec":
                result = run_exec(job)
            elif job["kind"] == "judge":
                result = run_judge(job)
            elif job["kind"] == "ping":
                result = {}
            else:
                result = {"stop": "harness_crash", "crash": f"unknown job kind {job['kind']!r}"}
        except Exception:
            result = {"stop": "harness_crash", "crash": traceback.format_exc()[-2000:]}
        left = cleanup()
        jobs += 1
        result.update(marker=marker, jobs=jobs, dirty=left, runner_s=round(time.monotonic() - t0, 4))
        stdout.write(json.dumps(wire.to_json(result), separators=(",", ":")).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
