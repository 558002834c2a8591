"""Load test of the verifier service on loopback, against in-process verdicts for the same items.

    .venv/bin/python benchmarks/load_test_service.py                    # 10,000 items, concurrency 64
    .venv/bin/python benchmarks/load_test_service.py --items 2000 --code-fraction 0.1

What it does, all in one run (the machine is shared and noisy, so the baseline is measured here too):

1. builds real items from ../shared/data: MATH500 and GSM8K references with right and wrong
   responses, HumanEval and MBPP with canonical and broken programs (code items need Docker; without
   an engine the script says so, and their verdicts must be ``error`` both ways);
2. verifies every distinct item in-process (``get_verifier(...).verify_batch``), timing it;
3. starts ``rest-em serve-verifier`` as a subprocess on a free loopback port with the same options;
4. sends all items in requests of ``--batch`` items, ``--concurrency`` requests at a time, with plain
   httpx (no retries: every non-200 is counted);
5. prints items/s, request latency p50/p99, lost items, 5xx answers and verdict mismatches, and
   exits 1 if any item was lost, any answer was a 5xx or any verdict differed.

The peers' protocols (``--endpoint``), sent with OpenRLHF's own retry loop (aiohttp, a fresh session per
try, raise_for_status, 5 tries 1 s apart, 180 s timeout):

    .venv/bin/python benchmarks/load_test_service.py --endpoint get_reward               # 10,000 math queries, 1 per request
    .venv/bin/python benchmarks/load_test_service.py --endpoint run_code --items 2000    # stdin programs in the sandbox
    .venv/bin/python benchmarks/load_test_service.py --endpoint get_reward --kill-at 0.5 # kill -9 halfway, restart

Each request must get exactly one answer (none lost, none twice) and the right one: the verdict of the
in-process verifier for /get_reward, the program's known stdout and return code for /run_code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")

logger = logging.getLogger("load_test_service")


# -- items ---------------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def math_pool() -> list[dict[str, Any]]:
    """Distinct math items: each MATH500 / GSM8K test problem with its solution and a wrong answer."""
    items = []
    for row in _jsonl(DATA / "math" / "math500.jsonl"):
        uid = row["unique_id"]
        items.append({"id": f"{uid}/right", "domain": "math", "reference": row["solution"],
                      "reference_format": "math_solution", "response": row["solution"]})
        items.append({"id": f"{uid}/wrong", "domain": "math", "reference": row["answer"],
                      "response": f"Therefore the answer is $\\boxed{{{row['answer']}+1}}$."})
    for i, row in enumerate(_jsonl(DATA / "gsm8k" / "test.jsonl")):
        final = row["answer"].rsplit("####", 1)[1].strip()
        items.append({"id": f"gsm8k/test/{i}/right", "domain": "math", "reference": row["answer"],
                      "reference_format": "gsm8k", "response": row["answer"]})
        items.append({"id": f"gsm8k/test/{i}/wrong", "domain": "math", "reference": row["answer"],
                      "reference_format": "gsm8k", "response": f"The answer is {final}1."})
    return items


def _broken(program: str) -> str:
    """A program that runs but answers wrongly: every function returns None."""
    return program + "\n\n" + "\n".join(
        f"def {name}(*args, **kwargs):\n    return None\n" for name in _top_level_functions(program)
    )


def _top_level_functions(program: str) -> list[str]:
    return [line[4:].split("(", 1)[0].strip() for line in program.splitlines() if line.startswith("def ")]


def code_pool() -> list[dict[str, Any]]:
    """Distinct code items: HumanEval and MBPP, each with its canonical program and a broken one."""
    from verifiers.code.datasets import humaneval_tests, mbpp_tests

    items = []
    for row in _jsonl(DATA / "humaneval" / "HumanEval.jsonl"):
        program = row["prompt"] + row["canonical_solution"]
        tests = humaneval_tests(row)
        items.append({"id": f"{row['task_id']}/canonical", "domain": "code", "response": program, "tests": tests})
        items.append({"id": f"{row['task_id']}/broken", "domain": "code", "response": _broken(program), "tests": tests})
    # MBPP's first ten tasks are its few-shot prompts; the rest are the benchmark.
    for row in _jsonl(DATA / "mbpp" / "mbpp.jsonl")[10:]:
        tests = mbpp_tests(row)
        items.append({"id": f"mbpp/{row['task_id']}/canonical", "domain": "code", "response": row["code"], "tests": tests})
        items.append({"id": f"mbpp/{row['task_id']}/broken", "domain": "code", "response": _broken(row["code"]),
                      "tests": tests})
    return items


def draw(pool: list[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` items from ``pool``: every distinct item once before any repeats, in random order."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        batch = pool[:]
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out


# -- in-process baseline -------------------------------------------------------------------------


def verify_in_process(domain: str, items: list[dict[str, Any]], options: dict[str, Any]) -> tuple[dict[str, tuple], float]:
    from verifiers.registry import get_verifier

    verifier = get_verifier(domain, **options)
    try:
        start = getattr(verifier, "start", None)
        if callable(start):
            start()
        parsed = [verifier.parse_item({k: v for k, v in it.items() if k != "domain"}, where=str(it["id"]))
                  for it in items]
        verifier.verify_batch(parsed[:4])  # warm-up, as the service warms up at start
        t0 = time.perf_counter()
        verdicts = verifier.verify_batch(parsed)
        seconds = time.perf_counter() - t0
    finally:
        verifier.close()
    return {it["id"]: (v.outcome.value, v.reason, v.message) for it, v in zip(items, verdicts)}, seconds


# -- the service ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(port: int, domains: list[str], args: argparse.Namespace, wait: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rest_em.cli", "serve-verifier", "--host", "127.0.0.1", "--port", str(port),
           "--domains", ",".join(domains), "--workers", str(args.math_workers),
           "--set", f"math.timeout_s={args.math_timeout_s}"]
    if args.chunk_items:
        cmd += ["--chunk-items", str(args.chunk_items)]
    if "code" in domains:
        cmd += ["--set", f"code.timeout_per_test_s={args.code_timeout_per_test_s}",
                "--set", f"code.timeout_per_problem_s={2 * args.code_timeout_per_test_s}"]
        if args.code_pool_size:
            cmd += ["--set", f"code.pool_size={args.code_pool_size}"]
    log = open(args.server_log, "a")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if not wait:
        return proc
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}; see {args.server_log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the service did not become healthy in 180 s")


async def send_all(url: str, items: list[dict[str, Any]], batch: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    requests = [items[i : i + batch] for i in range(0, len(items), batch)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    results: dict[int, list[dict[str, Any]]] = {}
    failures: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def one(index: int, body: list[dict[str, Any]]) -> None:
            async with semaphore:
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/verify", json={"items": body})
                except httpx.HTTPError as exc:
                    failures.append(f"request {index}: {type(exc).__name__}: {exc}")
                    statuses[0] += 1
                    return
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    results[index] = response.json()["results"]
                else:
                    failures.append(f"request {index}: HTTP {response.status_code}: {response.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, body) for i, body in enumerate(requests)))
        seconds = time.perf_counter() - t0
    answered = [r for i in range(len(requests)) for r in results.get(i, [])]
    return {"seconds": seconds, "latencies": latencies, "statuses": statuses, "results": answered,
            "requests": requests, "results_by_request": results, "failures": failures}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=10).ping()
        return True
    except Exception as exc:
        logger.info("no Docker engine: %s", exc)
        return False


# -- the peers' protocols: /get_reward (OpenRLHF) and /run_code (SandboxFusion) ---------------------

# OpenRLHF's chat prompt around each item (the query is prompt + response + the EOS text it decodes).
PROMPT = "<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"


def reward_requests(items: list[dict[str, Any]], batch: int) -> list[dict[str, Any]]:
    """OpenRLHF's /get_reward bodies for /v1/verify items, ``batch`` queries each (0.9.1+ sends 1)."""
    bodies = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        prompts = [PROMPT.format(problem=it["id"]) for it in chunk]
        bodies.append({
            "query": [p + it["response"] + "<|im_end|>" for p, it in zip(prompts, chunk)],
            "prompts": prompts,
            "labels": [{k: v for k, v in it.items() if k not in ("id", "response")} for it in chunk],
        })
    return bodies


def run_programs(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` SandboxFusion requests with the answer each must get: programs that read stdin and print,
    programs that raise (Failed, return code 1), in random order."""
    programs = []
    for k in range(n):
        a, b = rng.randint(-10**6, 10**6), rng.randint(-10**6, 10**6)
        if k % 10 == 9:
            programs.append({"request": {"code": f"import sys\nprint({k})\nsys.exit(3)", "language": "python",
                                         "run_timeout": 10},
                             "want": ("Failed", "Finished", 3, f"{k}\n")})
        else:
            programs.append({"request": {"code": "a, b = map(int, input().split())\nprint(a * b + %d)" % k,
                                         "stdin": f"{a} {b}\n", "language": "python", "run_timeout": 10,
                                         "memory_limit_MB": 1024, "compile_timeout": 10, "files": {}, "fetch_files": []},
                             "want": ("Success", "Finished", 0, f"{a * b + k}\n")})
    return programs


async def openrlhf_post(session: Any, url: str, data: dict[str, Any], stats: Counter, try_max_times: int = 5) -> Any:
    """OpenRLHF's ``_post_request`` (openrlhf/utils/agent.py, 0.11): a fresh aiohttp session per try,
    raise_for_status, 180 s total timeout, ``try_max_times`` tries 1 s apart; None when it gives up."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)
    for attempt in range(try_max_times):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as fresh:
                async with fresh.post(url, json=data) as response:
                    stats[f"http_{response.status}"] += 1
                    response.raise_for_status()
                    return await response.json()
        except aiohttp.ClientError as exc:
            stats[f"retry_{type(exc).__name__}"] += 1
        except Exception as exc:  # OpenRLHF logs and retries these too
            stats[f"retry_{type(exc).__name__}"] += 1
        await asyncio.sleep(1)
    stats["gave_up"] += 1
    return None


async def peer_load(url: str, bodies: list[dict[str, Any]], concurrency: int, on_progress: Any = None,
                    try_max_times: int = 5) -> dict[str, Any]:
    """Send every body with OpenRLHF's retry loop, ``concurrency`` at a time; one accepted answer per body."""
    semaphore = asyncio.Semaphore(concurrency)
    answers: dict[int, list[Any]] = {}
    latencies: list[float] = []
    stats: Counter = Counter()
    done = [0]

    async def one(index: int, body: dict[str, Any]) -> None:
        async with semaphore:
            t0 = time.perf_counter()
            got = await openrlhf_post(None, url, body, stats, try_max_times)
            latencies.append(time.perf_counter() - t0)
            if got is not None:
                answers.setdefault(index, []).append(got)
            done[0] += 1
            if on_progress is not None:
                on_progress(done[0])

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return {"seconds": time.perf_counter() - t0, "answers": answers, "latencies": latencies, "stats": stats}


def wait_for_port(port: int, restart: dict[str, float], limit_s: float = 120.0) -> None:
    """Record in ``restart["listening"]`` when the restarted service accepts connections again."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                restart["listening"] = time.perf_counter()
                return
        except OSError:
            time.sleep(0.05)


def main_peer(args: argparse.Namespace) -> int:
    """``--endpoint get_reward`` or ``run_code``: the peers' protocols under load, optionally with a kill -9."""
    rng = random.Random(args.seed)
    if args.endpoint == "get_reward":
        items = [{**it, "id": f"{k}:{it['id']}"} for k, it in enumerate(draw(math_pool(), args.items, rng))]
        distinct = list({it["id"].split(":", 1)[1]: {**it, "id": it["id"].split(":", 1)[1]} for it in items}.values())
        logger.info("in-process: verifying %d distinct math items", len(distinct))
        expected, seconds = verify_in_process("math", distinct, {"workers": args.math_workers,
                                                                 "timeout_s": args.math_timeout_s})
        logger.info("in-process math: %.0f items/s", len(distinct) / seconds)
        bodies = reward_requests(items, args.batch)
        want = [[expected[it["id"].split(":", 1)[1]][0] for it in items[i : i + args.batch]]
                for i in range(0, len(items), args.batch)]
        domains = ["math"]
        path = "/get_reward"
    else:
        programs = run_programs(args.items, rng)
        bodies = [p["request"] for p in programs]
        want = [p["want"] for p in programs]
        domains = ["math", "code"]  # the math lane idles; serve-verifier's --workers sets it
        path = "/run_code"

    port = free_port()
    url = f"http://127.0.0.1:{port}{path}"
    logger.info("starting rest-em serve-verifier on 127.0.0.1:%d", port)
    proc = [start_service(port, domains, args)]
    kill_at = round(args.kill_at * len(bodies)) if args.kill_at else None
    restart: dict[str, float] = {}

    def on_progress(done: int) -> None:
        if kill_at is not None and done == kill_at and "killed_at" not in restart:
            logger.info("kill -9 the service after %d of %d requests, and start it again", done, len(bodies))
            proc[0].send_signal(signal.SIGKILL)
            proc[0].wait()
            restart["killed_at"] = time.perf_counter()
            proc[0] = start_service(port, domains, args, wait=False)
            threading.Thread(target=wait_for_port, args=(port, restart), daemon=True).start()

    try:
        logger.info("sending %d %s requests (%d items), concurrency %d, OpenRLHF's retry loop",
                    len(bodies), path, args.items, args.concurrency)
        run = asyncio.run(peer_load(url, bodies, args.concurrency, on_progress))
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        proc[0].send_signal(signal.SIGTERM)
        try:
            proc[0].wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc[0].kill()

    answers = run["answers"]
    lost = [i for i in range(len(bodies)) if i not in answers]
    duplicated = [i for i, got in answers.items() if len(got) != 1]
    wrong: list[tuple[int, Any, Any]] = []
    for i, got in answers.items():
        body = got[0]
        if args.endpoint == "get_reward":
            verdicts = [v["verdict"] for v in body["verdicts"]]
            rewards_ok = body["rewards"] == [1.0 if v == "pass" else 0.0 for v in verdicts] == body["scores"]
            if verdicts != want[i] or not rewards_ok or len(body["rewards"]) != len(bodies[i]["query"]):
                wrong.append((i, want[i], verdicts))
        else:
            run_result = body.get("run_result") or {}
            have = (body["status"], run_result.get("status"), run_result.get("return_code"), run_result.get("stdout"))
            if have != want[i]:
                wrong.append((i, want[i], have))
    latencies = run["latencies"]
    report = {
        "endpoint": path, "requests": len(bodies), "items": args.items, "batch": args.batch if path == "/get_reward" else 1,
        "concurrency": args.concurrency, "seconds": round(run["seconds"], 2),
        "requests_per_s": round(len(bodies) / run["seconds"], 1),
        "latency_p50_s": round(percentile(latencies, 0.50), 3), "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "answered": len(answers), "lost": len(lost), "duplicated": len(duplicated), "wrong": len(wrong),
        "client": dict(sorted(run["stats"].items())),
        "killed_after_requests": kill_at,
    }
    if "listening" in restart:  # from the kill to the restarted service accepting connections
        report["port_reopened_after_s"] = round(restart["listening"] - restart["killed_at"], 2)
    print(json.dumps(report, indent=2))
    print(f"\n{path}: {len(bodies)} requests ({args.items} items) at concurrency {args.concurrency} in "
          f"{report['seconds']} s; latency p50 {report['latency_p50_s']} s, p99 {report['latency_p99_s']} s; "
          f"lost {len(lost)}, duplicated {len(duplicated)}, wrong {len(wrong)}"
          + (f"; killed with -9 after {kill_at} requests and restarted" if kill_at is not None else ""))
    for i, w, h in wrong[:5]:
        print(f"  wrong answer to request {i}: want {w}, got {h}")
    queue_line = next((line for line in metrics.splitlines() if line.startswith("rest_em_verifier_queue_depth ")), "")
    print(f"  after the run: {queue_line}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if not lost and not duplicated and not wrong else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", choices=["verify", "get_reward", "run_code"], default="verify",
                   help="verify: /v1/verify with plain httpx; get_reward / run_code: the peers' protocols with "
                        "OpenRLHF's retry loop (math items for get_reward, stdin programs for run_code)")
    p.add_argument("--kill-at", type=float, default=None,
                   help="get_reward / run_code: kill -9 the service when this share of the requests is done, "
                        "restart it at once, and check that every request still gets exactly one answer")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--batch", type=int, default=None,
                   help="items per request (default 16 for verify, 1 for get_reward: OpenRLHF 0.9.1+ sends one)")
    p.add_argument("--code-fraction", type=float, default=0.1, help="share of code items (they cost far more)")
    p.add_argument("--math-workers", type=int, default=2)
    p.add_argument("--math-timeout-s", type=float, default=10.0)
    p.add_argument("--code-pool-size", type=int, default=0, help="sandbox containers (0: the verifier's default)")
    # Wall-clock limits turn into verdicts (`timeout`), and the service runs math and code at the same
    # time on the same cores: a heavy MBPP solution (mbpp/123 needs ~10 CPU-seconds) can pass alone and
    # time out under load, on either path. The generous limit keeps the comparison about the service,
    # not the machine's load; mismatches that involve a timeout are still reported, as timing-dependent.
    p.add_argument("--code-timeout-per-test-s", type=float, default=60.0)
    p.add_argument("--chunk-items", type=int, default=None, help="the service's --chunk-items (default: its own)")
    p.add_argument("--request-timeout-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-log", default="/tmp/rest-em-load-test-server.log")
    p.add_argument("--json", dest="json_out", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the report
    Path(args.server_log).write_text("")  # each start of the service appends (a restart keeps the first log)
    if args.batch is None:
        args.batch = 1 if args.endpoint == "get_reward" else 16
    if args.endpoint != "verify":
        return main_peer(args)
    rng = random.Random(args.seed)

    n_code = round(args.items * args.code_fraction)
    has_docker = docker_available() if n_code else False
    if n_code and not has_docker:
        print("Docker engine not reachable: code items are still sent, and their verdicts must be `error` "
              "(sandbox unavailable) both in-process and through the service.")
    math_items = draw(math_pool(), args.items - n_code, rng)
    code_items = draw(code_pool(), n_code, rng) if n_code else []
    # Requests carry distinct ids; the verdict is compared with the one for the item's content.
    items = []
    for k, it in enumerate(math_items + code_items):
        items.append({**it, "id": f"{k}:{it['id']}"})
    rng.shuffle(items)
    base_id = {it["id"]: it["id"].split(":", 1)[1] for it in items}
    domains = ["math"] + (["code"] if code_items else [])

    options = {"math": {"workers": args.math_workers, "timeout_s": args.math_timeout_s}}
    options["code"] = {"timeout_per_test_s": args.code_timeout_per_test_s,
                       "timeout_per_problem_s": 2 * args.code_timeout_per_test_s}
    if args.code_pool_size:
        options["code"]["pool_size"] = args.code_pool_size
    expected: dict[str, tuple] = {}
    baseline: dict[str, float] = {}
    for domain, pool_items in (("math", math_items), ("code", code_items)):
        if not pool_items:
            continue
        distinct = list({it["id"]: it for it in pool_items}.values())
        logger.info("in-process: verifying %d distinct %s items", len(distinct), domain)
        verdicts, seconds = verify_in_process(domain, distinct, options.get(domain, {}))
        expected.update(verdicts)
        baseline[domain] = len(distinct) / seconds
        logger.info("in-process %s: %.0f items/s", domain, baseline[domain])

    port = free_port()
    logger.info("starting rest-em serve-verifier on 127.0.0.1:%d", port)
    proc = start_service(port, domains, args)
    try:
        logger.info("sending %d items (%d math, %d code) in requests of %d, concurrency %d",
                    len(items), len(math_items), len(code_items), args.batch, args.concurrency)
        run = asyncio.run(send_all(f"http://127.0.0.1:{port}", items, args.batch, args.concurrency,
                                   args.request_timeout_s))
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()

    sent_ids = [it["id"] for it in items]
    got = {r["id"]: r for r in run["results"]}
    lost = [i for i in sent_ids if i not in got]
    order_ok = all(
        [r["id"] for r in run["results_by_request"][i]] == [it["id"] for it in body]
        for i, body in enumerate(run["requests"]) if i in run["results_by_request"]
    )
    mismatches = []
    for item_id, r in got.items():
        want = expected[base_id[item_id]]
        have = (r["verdict"], r["reason"], r["message"])
        if have[:2] != want[:2] or have[2] != want[2]:
            mismatches.append((item_id, want, have))
    # A verdict decided by a wall clock (reason `timeout` on either side) depends on the machine's load.
    timing = [m for m in mismatches if "timeout" in (m[1][1], m[2][1])]
    five_xx = sum(n for status, n in run["statuses"].items() if status >= 500)
    outcomes = Counter((r["domain"], r["verdict"]) for r in run["results"])
    reasons = Counter((r["domain"], r["verdict"], r["reason"]) for r in run["results"])
    latencies = run["latencies"]
    rate = len(got) / run["seconds"]
    # The in-process baseline is per domain; weigh it by the mix sent.
    mix_seconds = sum(n / baseline[d] for d, n in (("math", len(math_items)), ("code", len(code_items))) if n)
    report = {
        "items": len(items), "math_items": len(math_items), "code_items": len(code_items),
        "docker": has_docker, "concurrency": args.concurrency, "batch": args.batch,
        "seconds": round(run["seconds"], 2), "items_per_s": round(rate, 1),
        "in_process_items_per_s": {d: round(v, 1) for d, v in baseline.items()},
        "service_vs_in_process": round(rate / (len(items) / mix_seconds), 2),
        "request_latency_p50_s": round(percentile(latencies, 0.50), 3),
        "request_latency_p99_s": round(percentile(latencies, 0.99), 3),
        "requests": len(run["requests"]), "statuses": {str(k): v for k, v in sorted(run["statuses"].items())},
        "lost": len(lost), "five_xx": five_xx, "mismatches": len(mismatches), "timing_dependent_mismatches": len(timing),
        "order_preserved": order_ok,
        "verdicts": {f"{d}/{v}": n for (d, v), n in sorted(outcomes.items())},
        "reasons": {f"{d}/{v}/{r}": n for (d, v, r), n in sorted(reasons.items())},
    }
    print(json.dumps(report, indent=2))
    print(f"\n{report['items_per_s']} items/s ({report['service_vs_in_process']}x the in-process rate measured in "
          f"this run); request latency p50 {report['request_latency_p50_s']} s, p99 {report['request_latency_p99_s']} s; "
          f"lost {len(lost)}, 5xx {five_xx}, mismatches {len(mismatches)} ({len(timing)} of them timing-dependent)")
    for failure in run["failures"][:5]:
        print("  failure:", failure)
    for item_id, want, have in mismatches[:5]:
        print(f"  mismatch {item_id}: in-process {want} vs service {have}")
    if not has_docker and code_items:
        not_error = [r for r in run["results"] if r["domain"] == "code" and r["verdict"] != "error"]
        print(f"  no Docker: {len(not_error)} code verdicts were not `error`")
        if not_error:
            return 1
    queue_line = next((line for line in metrics.splitlines() if line.startswith("rest_em_verifier_queue_depth ")), "")
    print(f"  after the run: {queue_line}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if not lost and not five_xx and not mismatches and order_ok else 1


if __name__ == "__main__":
    sys.exit(main())
