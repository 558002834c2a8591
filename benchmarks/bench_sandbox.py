"""Throughput and correctness of the code sandbox, against plain unisolated subprocesses in the same run.

    .venv/bin/python benchmarks/bench_sandbox.py [--rounds 2] [--pool-size 0] [--data ../shared/data]

Programs (all from ../shared/data):
  * HumanEval's 164 canonical solutions            (every one must pass)
  * 164 broken variants (the body returns None)    (every one must fail)
  * 164 exit-hack variants (os._exit(0) at import) (every one must fail)
  * every reference solution of the APPS problems in apps/original_layout_train (reported when one
    fails its own tests: upstream APPS has such)

Each round runs all programs through the pool (CodeVerifier) and then through plain subprocesses of the
same interpreter with the same flags, as many at a time as the pool has containers. It prints programs
per second of both, the ratio pool/subprocess, and CPU time per program: for the pool, the containers'
cgroup CPU plus this process plus the Docker daemons (dockerd, containerd, shims); for subprocesses,
their rusage plus this process. Verdicts must be identical across rounds. Exit status 1 when a
correctness check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verifiers.code import CodeItem, CodeVerifier  # noqa: E402
from verifiers.code.datasets import apps_tests, humaneval_tests  # noqa: E402
from verifiers.code.harness import CALL_HEADER, call_match, program_for, stdio_match  # noqa: E402

log = logging.getLogger("bench_sandbox")
TICK = os.sysconf("SC_CLK_TCK")
DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


# ----------------------------------------------------------------------------------------- programs

def load_programs(data: Path) -> dict[str, list[CodeItem]]:
    rows = [json.loads(line) for line in (data / "humaneval" / "HumanEval.jsonl").open()]
    sets: dict[str, list[CodeItem]] = {"canonical": [], "broken": [], "exit_hack": [], "apps": []}
    for r in rows:
        tests = humaneval_tests(r)
        sets["canonical"].append(CodeItem(r["task_id"], r["canonical_solution"], tests))
        sets["broken"].append(CodeItem(r["task_id"], "    return None\n", tests))
        sets["exit_hack"].append(CodeItem(r["task_id"], r["canonical_solution"] + "\nimport os\nos._exit(0)\n", tests))
    for prob in sorted((data / "apps" / "original_layout_train").iterdir()):
        if not (prob / "solutions.json").exists():
            continue
        tests = apps_tests(json.loads((prob / "input_output.json").read_text()))
        for k, sol in enumerate(json.loads((prob / "solutions.json").read_text())):
            sets["apps"].append(CodeItem(f"apps/{prob.name}#{k}", sol, tests))
    return sets


# ------------------------------------------------------------------------------------- CPU counters

def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def daemon_cpu_s() -> float:
    total = 0.0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                comm = (p / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(DAEMONS):
                total += _proc_cpu_s(int(p.name))
    return total


def container_cpu_s(container_id: str) -> float | None:
    for path in (f"/sys/fs/cgroup/cpuacct/{container_id}/cpuacct.usage",  # cgroup_parent "/"
                 f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"):
        try:
            return int(Path(path).read_text()) / 1e9
        except OSError:
            pass
    try:  # cgroup v2
        for line in Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return None


class PoolCpu:
    """CPU of the pool's containers (sampled per container, so replaced ones count until removal)."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.seen: dict[str, tuple[float, float]] = {}

    def sample(self) -> None:
        with self.pool._lock:
            ids = [w.container.id for w in self.pool._all]
        for cid in ids:
            v = container_cpu_s(cid)
            if v is not None:
                first = self.seen.get(cid, (v, v))[0]
                self.seen[cid] = (first, v)

    def total(self) -> float:
        return sum(last - first for first, last in self.seen.values())


# --------------------------------------------------------------------------------- the pool's side

def run_pool(verifier: CodeVerifier, items: list[CodeItem]) -> tuple[list[str], float, float]:
    pool = verifier._get_pool()
    cpu = PoolCpu(pool)
    cpu.sample()
    d0, p0, t0 = daemon_cpu_s(), time.process_time(), time.perf_counter()
    verdicts = verifier.verify_batch(items)
    wall = time.perf_counter() - t0
    cpu.sample()
    cpu_s = cpu.total() + (time.process_time() - p0) + (daemon_cpu_s() - d0)
    return [f"{v.outcome}:{v.reason}" for v in verdicts], wall, cpu_s


# --------------------------------------------------------------------------- the subprocess baseline

def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1"}


PY = [os.path.realpath(sys.executable), "-s", "-S", "-B"]  # the sandbox's flags, on this machine's python


def _run(path: str, stdin: str = "", timeout: float = 10.0) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([*PY, path], input=stdin.encode(), capture_output=True, timeout=timeout, env=_env(),
                              cwd=os.path.dirname(path))
    except subprocess.TimeoutExpired:
        return None


CALL_DRIVER = """
import json as _json, sys as _sys
_fn = globals().get({fn!r}) or getattr(Solution(), {fn!r})
for _args in _json.loads(_sys.stdin.read()):
    print("@@result " + _json.dumps(_fn(*_args)))
"""


def baseline_one(item: CodeItem, workdir: str) -> str:
    """The classic unisolated harness: exit status 0 of prompt+solution+tests is a pass."""
    t = item.tests
    path = os.path.join(workdir, f"p{abs(hash((item.id, item.response))) % 10**12}.py")
    if item.style == "humaneval":
        src = program_for(item, item.response) + "\n" + t["test"] + f"\ncheck({t['entry_point']})\n"
        Path(path).write_text(src)
        r = _run(path)
        return "pass" if r is not None and r.returncode == 0 else "fail"
    if item.style == "stdio":
        Path(path).write_text(item.response)
        for inp, out in zip(t["inputs"], t["outputs"]):
            r = _run(path, inp, timeout=4)
            if r is None or r.returncode != 0 or not stdio_match(r.stdout.decode("utf-8", "replace"), out):
                return "fail"
        return "pass"
    if item.style == "call":
        Path(path).write_text(CALL_HEADER + item.response + CALL_DRIVER.format(fn=t["fn_name"]))
        r = _run(path, json.dumps(t["inputs"]), timeout=10)
        if r is None or r.returncode != 0:
            return "fail"
        got = [json.loads(line[9:]) for line in r.stdout.decode().splitlines() if line.startswith("@@result ")]
        ok = len(got) == len(t["outputs"]) and all(call_match(g, e) for g, e in zip(got, t["outputs"]))
        return "pass" if ok else "fail"
    raise ValueError(item.style)


def run_subprocess(items: list[CodeItem], workers: int) -> tuple[list[str], float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-sub-") as wd:
        r0, p0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as ex:
            out = list(ex.map(lambda it: baseline_one(it, wd), items))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + (time.process_time() - p0)
    return out, wall, cpu


# --------------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pool-size", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    sets = load_programs(args.data)
    items = [it for name in ("canonical", "broken", "exit_hack", "apps") for it in sets[name]]
    spans, start = {}, 0
    for name in ("canonical", "broken", "exit_hack", "apps"):
        spans[name] = (start, start + len(sets[name]))
        start += len(sets[name])
    ok = True
    with CodeVerifier.from_options(pool_size=args.pool_size) as verifier:
        pool = verifier._get_pool()
        if pool is None:
            print(f"sandbox unavailable: {verifier.health().get('reason')}")
            return 1
        workers = pool.config.resolved_size
        verifier.verify_batch(sets["canonical"][:workers * 2])  # warm the containers' page cache
        pool_runs, sub_runs = [], []
        for rnd in range(args.rounds):
            pool_runs.append(run_pool(verifier, items))
            sub_runs.append(run_subprocess(items, workers))
            print(f"round {rnd + 1}: pool {len(items) / pool_runs[-1][1]:.1f} programs/s, "
                  f"subprocess {len(items) / sub_runs[-1][1]:.1f} programs/s")
        health = verifier.health()

    verdicts = pool_runs[0][0]
    print(f"\n{len(items)} programs x {args.rounds} rounds, pool of {workers} container(s), {os.cpu_count()} CPU(s)")
    for name, (a, b) in spans.items():
        got = verdicts[a:b]
        passed = sum(v.startswith("pass") for v in got)
        errors = sum(v.startswith("error") for v in got)
        sub_passed = sum(v == "pass" for v in sub_runs[0][0][a:b])
        print(f"  {name:10s} pool: {passed:3d}/{b - a} pass, {errors} error   "
              f"plain subprocess (exit status): {sub_passed:3d}/{b - a} pass")
        reasons: dict[str, int] = {}
        for v in got:
            reasons[v] = reasons.get(v, 0) + 1
        print("             " + ", ".join(f"{k} x{n}" for k, n in sorted(reasons.items())))
        if name == "canonical" and passed != b - a:
            ok = False
            print("  FAIL: canonical solutions that did not pass:",
                  [(it.id, v) for it, v in zip(sets[name], got) if not v.startswith("pass")])
        if name in ("broken", "exit_hack") and passed:
            ok = False
            print(f"  FAIL: {name} variants that passed:", [it.id for it, v in zip(sets[name], got) if v.startswith("pass")])
        if errors:
            ok = False
        if name == "apps":
            bad = [(it.id, v) for it, v in zip(sets[name], got) if not v.startswith("pass")]
            print(f"  APPS reference solutions failing their own tests: {len(bad)}")
            for ident, v in bad:
                print(f"    {ident}: {v}")
    same = all(run[0] == verdicts for run in pool_runs)
    print(f"verdicts identical over {args.rounds} rounds: {same}")
    ok &= same

    n = len(items) * args.rounds
    pool_wall = sum(r[1] for r in pool_runs)
    sub_wall = sum(r[1] for r in sub_runs)
    pool_cpu = sum(r[2] for r in pool_runs)
    sub_cpu = sum(r[2] for r in sub_runs)
    print(f"\npool:       {n / pool_wall:7.1f} programs/s   CPU {1000 * pool_cpu / n:6.1f} ms/program "
          "(containers + this process + docker daemons)")
    print(f"subprocess: {n / sub_wall:7.1f} programs/s   CPU {1000 * sub_cpu / n:6.1f} ms/program "
          "(children + this process)")
    print(f"ratio pool/subprocess: throughput {(n / pool_wall) / (n / sub_wall):.2f}   "
          f"CPU per program {sub_cpu / pool_cpu:.2f} (subprocess CPU / pool CPU)")
    print(f"pool health: {json.dumps(health)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
