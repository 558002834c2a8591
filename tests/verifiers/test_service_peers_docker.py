"""The peers' own clients against ``rest-em serve-verifier`` on loopback, with the real Docker sandbox:

- the ``sandbox-fusion`` PyPI client (``run_code``): ordinary programs give ``Success`` with their stdout, an
  infinite loop gives ``TimeLimitExceeded``, and the attacks of tests/sandbox/test_adversarial.py, sent as
  ``/run_code`` programs, are contained (the pool keeps serving, the host is untouched);
- veRL's sandbox_fusion request (its exact payload, read as its ``check_correctness`` reads it);
- a ``/get_reward`` batch of math and code rows gives the same pass/fail as ``/v1/verify`` on the same items.

The judge-side attacks of test_adversarial.py (rigged ``__eq__``, patched ``check``, forged markers) need a
test harness; ``/run_code`` has none (it runs one program and reports its output), so they do not apply here.

Marked ``docker``. Run: .venv/bin/python -m pytest -q tests/verifiers/test_service_peers_docker.py
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_service_support import DATA, free_port, read_jsonl

from verifiers.code.datasets import humaneval_tests, mbpp_tests

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def service(sandbox_image, tmp_path_factory):
    """``rest-em serve-verifier`` (the CLI, as a user starts it) serving math and code on a loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [sys.executable, "-m", "rest_em.cli", "serve-verifier", "--port", str(port), "--domains", "math,code",
           "--workers", "1", "--set", f"code.image={sandbox_image}", "--set", "code.pool_size=2",
           "--set", "code.timeout_per_test_s=2", "--set", "code.timeout_per_problem_s=6"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REST_EM_VERIFIER_TOKEN", None)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not become healthy: " + log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).json()["status"] == "ok":
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def sf(service):
    """The real sandbox-fusion client, pointed at the service."""
    sandbox_fusion = pytest.importorskip("sandbox_fusion")
    sandbox_fusion.set_sandbox_endpoint(service)
    return sandbox_fusion


def run(sf, code: str, stdin: str | None = None, run_timeout: float = RUN_TIMEOUT_S):
    return sf.run_code(sf.RunCodeRequest(code=textwrap.dedent(code), language="python", stdin=stdin,
                                         run_timeout=run_timeout), max_attempts=1, client_timeout=60)


def pool_health(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=10).json()["domains"]["code"]["details"]


def assert_pool_still_serves(sf, url: str) -> None:
    for n in range(4):
        r = run(sf, "print(int(input()) * 2)", stdin=f"{n}\n")
        assert r.status == sf.RunStatus.Success and r.run_result.stdout == f"{2 * n}\n", r
    health = pool_health(url)
    assert health["alive"] == health["size"], health


# ------------------------------------------------------------------------------- sandbox-fusion client

def test_ordinary_programs_succeed_with_their_stdout(sf, service):
    r = run(sf, "import sys\nname = sys.stdin.readline().strip()\nprint(f'hello {name}')\nprint(sum(range(10)))",
            stdin="world\n")
    assert r.status == sf.RunStatus.Success, r
    assert r.run_result.status == sf.CommandRunStatus.Finished and r.run_result.return_code == 0
    assert r.run_result.stdout == "hello world\n45\n" and r.run_result.execution_time >= 0
    failed = run(sf, "import sys\nprint('partial')\nsys.stderr.write('bad input')\nsys.exit(2)")
    assert failed.status == sf.RunStatus.Failed and failed.run_result.return_code == 2
    assert failed.run_result.stdout == "partial\n" and "bad input" in failed.run_result.stderr
    raised = run(sf, "raise ValueError('nope')")
    assert raised.status == sf.RunStatus.Failed and "ValueError: nope" in raised.run_result.stderr
    assert sf.summary_run_code_result(r, sf.SummaryMapping()) == "Success"


def test_an_infinite_loop_is_time_limit_exceeded(sf, service):
    r = run(sf, "while True:\n    pass\n", run_timeout=1.0)
    assert r.status == sf.RunStatus.Failed and r.run_result.status == sf.CommandRunStatus.TimeLimitExceeded, r
    assert sf.summary_run_code_result(r, sf.SummaryMapping(RunTimeout="TLE")) == "TLE"
    assert_pool_still_serves(sf, service)


def test_the_client_sees_an_unsupported_language_as_the_sandbox_refusing_it(sf, service):
    with pytest.raises(Exception, match="422"):
        sf.run_code(sf.RunCodeRequest(code="int main(){}", language="cpp"), max_attempts=1)


def test_verls_sandbox_fusion_request_is_answered_as_it_reads_it(service):
    """veRL (verl/utils/reward_score/sandbox_fusion/utils.py, call_sandbox_api): its payload and headers, and the
    fields _process_single_case reads: status, run_result.status / stdout / return_code."""
    import requests

    payload = json.dumps({"compile_timeout": 2, "run_timeout": 2, "code": "print(int(input()) + 1)", "stdin": "41",
                          "memory_limit_MB": 1024, "language": "python", "files": {}, "fetch_files": []})
    response = requests.post(f"{service}/run_code", data=payload, timeout=2 + 2 + 10,
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Success" and body["run_result"]["status"] == "Finished"
    assert str(body["run_result"]["stdout"]).rstrip("\n") == "42" and body["run_result"]["return_code"] == 0
    assert body["compile_result"] is None  # veRL's is_compile_error stays False for python


# ------------------------------------------------------------------------- attacks through /run_code

ATTACKS = {
    "fork_bomb": ("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, lambda r, sf: r.run_result.status == sf.CommandRunStatus.TimeLimitExceeded),
    "memory_bomb": ("""
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))
    """, lambda r, sf: r.status == sf.RunStatus.Failed and r.run_result.return_code != 0),
    "memory_split_over_processes": ("""
        import os, time
        for _ in range(6):
            if os.fork() == 0:
                hog = b"x" * (200 * 1024 * 1024)
                time.sleep(30)
        time.sleep(30)
    """, lambda r, sf: r.status == sf.RunStatus.Failed),
    "sleep_forever": ("import time\ntime.sleep(10 ** 6)\n",
                      lambda r, sf: r.run_result.status == sf.CommandRunStatus.TimeLimitExceeded),
    "stdout_flood": ("while True:\n    print('x' * 100000)\n",
                     lambda r, sf: r.status == sf.RunStatus.Failed and "output limit" in r.run_result.stderr
                     and len(r.run_result.stdout) <= (1 << 20)),
    "fill_tmp_and_shm": ("""
        import errno
        for root in ("/tmp", "/dev/shm"):
            i = 0
            try:
                while True:
                    with open(f"{root}/fill{i}", "wb") as fh:
                        fh.write(b"\\0" * (1 << 20))
                    i += 1
            except OSError as exc:
                print(root, "full" if exc.errno == errno.ENOSPC else exc.errno, i < 200)
    """, lambda r, sf: r.run_result.stdout == "/tmp full True\n/dev/shm full True\n"),
    "write_outside_scratch": ("""
        for path in ["/etc/passwd", "/opt/sandbox/runner.py", "/usr/local/lib/python3.11/os.py", "/evil",
                     "/usr/local/bin/python3", "/proc/sys/kernel/hostname"]:
            try:
                with open(path, "a") as fh:
                    fh.write("owned")
                print("WROTE", path)
            except OSError:
                print("refused")
    """, lambda r, sf: r.run_result.stdout == "refused\n" * 6),
    "kill_minus_one": ("import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\n",
                       lambda r, sf: r.status == sf.RunStatus.Failed),
    "runner_out_of_reach": ("""
        for path, mode in [("/proc/1/fd/1", "w"), ("/proc/1/fd/0", "r"), ("/proc/1/mem", "rb"),
                           ("/proc/1/environ", "rb")]:
            try:
                open(path, mode)
                print("OPENED", path)
            except OSError:
                print("refused")
    """, lambda r, sf: r.run_result.stdout == "refused\n" * 4),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_sent_through_run_code_are_contained(sf, service, name):
    code, contained = ATTACKS[name]
    before = pool_health(service)
    r = run(sf, code)
    assert r.status != sf.RunStatus.SandboxError and r.run_result is not None, r
    assert contained(r, sf), r
    if name in ("kill_minus_one", "runner_out_of_reach", "write_outside_scratch"):
        assert pool_health(service)["replaced"] == before["replaced"]  # PID 1 survived
    assert_pool_still_serves(sf, service)


def test_a_daemon_does_not_outlive_its_program(sf, service):
    daemon = """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1.0)
                with open("/tmp/daemon_was_here", "w") as fh:
                    fh.write("x")
                while True:
                    time.sleep(1)
            os._exit(0)
        print("done")
    """
    assert run(sf, daemon).run_result.stdout == "done\n"
    time.sleep(1.5)
    check = """
        import os
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
        print(len(others), os.path.exists("/tmp/daemon_was_here"))
    """
    for _ in range(4):  # whichever container answers
        assert run(sf, check).run_result.stdout == "0 False\n"


def test_host_files_and_sockets_are_out_of_reach(sf, service, tmp_path):
    secret = secrets.token_hex(16)
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    hits: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                hits.append(listener.accept()[1])
            except (socket.timeout, OSError):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    code = f"""
        import socket
        found = []
        for p in [{str(path)!r}, "/proc/1/root" + {str(path)!r}, "/host" + {str(path)!r}]:
            try:
                found.append(open(p).read())
            except OSError:
                pass
        print(found[0] if found else "unreadable")
        for host, port in [("127.0.0.1", {port}), ("192.0.2.1", 80)]:
            try:
                socket.create_connection((host, port), timeout=1)
                print("CONNECTED", host)
            except OSError:
                print("refused")
    """
    try:
        r = run(sf, code, run_timeout=5)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert r.run_result.stdout == "unreadable\nrefused\nrefused\n", r
    assert hits == [] and path.read_text() == secret


# ------------------------------------------------------------------ /get_reward vs /v1/verify

def test_get_reward_with_math_and_code_rows_matches_v1_verify(service):
    items = []
    for row in read_jsonl(DATA / "humaneval" / "HumanEval.jsonl", limit=3):
        tests = humaneval_tests(row)
        items.append({"id": f"{row['task_id']}/ok", "domain": "code", "response": row["canonical_solution"], "tests": tests})
        items.append({"id": f"{row['task_id']}/bad", "domain": "code", "response": "    return None\n", "tests": tests})
    for row in read_jsonl(DATA / "mbpp" / "mbpp.jsonl")[10:12]:
        items.append({"id": f"mbpp/{row['task_id']}", "domain": "code",
                      "response": f"```python\n{row['code']}\n```", "tests": mbpp_tests(row)})
    items.append({"id": "stdio", "domain": "code", "response": "print(sum(map(int, input().split())))",
                  "tests": {"style": "stdio", "inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}})
    items += [{"id": "m1", "domain": "math", "reference": "\\frac{1}{2}", "response": "so \\boxed{0.5}"},
              {"id": "m2", "domain": "math", "reference": "7", "response": "the answer is \\boxed{8}"}]
    verify = httpx.post(f"{service}/v1/verify", json={"items": items}, timeout=300)
    assert verify.status_code == 200, verify.text
    want = [r["verdict"] for r in verify.json()["results"]]
    prompt = "<|im_start|>user\nSolve.<|im_end|>\n<|im_start|>assistant\n"
    body = {"query": [prompt + it["response"] + "<|im_end|>" for it in items], "prompts": [prompt] * len(items),
            "labels": [json.dumps({k: v for k, v in it.items() if k not in ("id", "response")}) for it in items]}
    got = httpx.post(f"{service}/get_reward", json=body, timeout=300)
    assert got.status_code == 200, got.text
    assert [v["verdict"] for v in got.json()["verdicts"]] == want
    assert got.json()["rewards"] == [1.0 if w == "pass" else 0.0 for w in want]
    assert want.count("pass") == 7 and want.count("fail") == 4  # both outcomes in both domains
