"""Adversarial programs against the real sandbox: one attack per test, each followed by honest jobs that
must pass in the same pool, and a check that the host is unaffected.

Run: .venv/bin/python -m pytest -q tests/sandbox/test_adversarial.py
Needs Docker (skipped with the reason without it; a failure when REST_EM_REQUIRE_DOCKER=1).
"""

from __future__ import annotations

import json
import secrets
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from verifiers.code import CodeItem, CodeVerifier, CodeVerifyConfig
from verifiers.code.datasets import humaneval_tests

pytestmark = pytest.mark.docker

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HUMANEVAL = [json.loads(line) for line in (DATA / "humaneval" / "HumanEval.jsonl").open()]
HE0 = HUMANEVAL[0]  # has_close_elements
TEST_TIMEOUT_S = 2.0  # the limits of the session's ``code_verifier`` (tests/conftest.py)
PROBLEM_TIMEOUT_S = 6.0


def stdio(code: str, inputs=("",), outputs=("",), ident: str = "attack") -> CodeItem:
    return CodeItem(ident, textwrap.dedent(code), {"style": "stdio", "inputs": list(inputs), "outputs": list(outputs)})


def humaneval(response: str, row: dict = HE0) -> CodeItem:
    return CodeItem(row["task_id"], response, humaneval_tests(row))


def run(v: CodeVerifier, item: CodeItem):
    return v.verify_batch([item])[0]


def assert_pool_still_serves(v: CodeVerifier) -> None:
    """Honest jobs on every container of the pool pass after the attack."""
    honest = [stdio("print(int(input()) * 2)", [f"{n}\n"], [f"{2 * n}\n"], ident=f"honest{n}") for n in range(4)]
    honest.append(humaneval(HE0["canonical_solution"]))
    verdicts = v.verify_batch(honest)
    assert all(x.is_pass for x in verdicts), verdicts
    assert v.health()["alive"] == v.health()["size"]


@pytest.fixture(scope="module")
def solo(sandbox_image):
    """One container, so that two consecutive jobs are sure to share it (state and daemon tests)."""
    v = CodeVerifier(CodeVerifyConfig(image=sandbox_image, pool_size=1, timeout_per_test_s=TEST_TIMEOUT_S,
                                      timeout_per_problem_s=PROBLEM_TIMEOUT_S))
    yield v
    v.close()


# ------------------------------------------------------------------------------------ resource attacks

def test_the_session_pool_has_the_short_limits_these_tests_assume(code_verifier):
    assert code_verifier.config.timeout_per_test_s == TEST_TIMEOUT_S
    assert code_verifier.config.timeout_per_problem_s == PROBLEM_TIMEOUT_S


def test_fork_bomb_is_stopped_by_the_pids_limit_and_deadline(code_verifier):
    t0 = time.monotonic()
    verdict = run(code_verifier, stdio("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """))
    assert verdict.outcome == "fail" and verdict.reason == "timeout", verdict
    assert time.monotonic() - t0 < TEST_TIMEOUT_S + 10
    assert_pool_still_serves(code_verifier)


def test_memory_bomb_is_a_memory_limit_failure(code_verifier):
    verdict = run(code_verifier, stdio("""
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))
    """))
    assert verdict.outcome == "fail" and verdict.reason == "memory_limit", verdict
    assert_pool_still_serves(code_verifier)


def test_memory_bomb_split_over_processes_hits_the_container_limit(code_verifier):
    # Each child stays under its own address-space limit; together they exceed the container's memory.
    verdict = run(code_verifier, stdio("""
        import os, time
        for _ in range(6):
            if os.fork() == 0:
                hog = b"x" * (200 * 1024 * 1024)
                time.sleep(30)
        time.sleep(30)
    """))
    assert verdict.outcome == "fail" and verdict.reason in ("memory_limit", "timeout"), verdict
    assert_pool_still_serves(code_verifier)


def test_infinite_loop_is_a_timeout(code_verifier):
    t0 = time.monotonic()
    verdict = run(code_verifier, stdio("while True:\n    pass\n"))
    assert verdict.outcome == "fail" and verdict.reason == "timeout", verdict
    assert time.monotonic() - t0 < TEST_TIMEOUT_S + 5
    assert_pool_still_serves(code_verifier)


def test_sleeping_forever_is_a_timeout_by_wall_clock(code_verifier):
    # Uses no CPU, so only the wall deadline can stop it.
    t0 = time.monotonic()
    verdict = run(code_verifier, stdio("import time\ntime.sleep(10 ** 6)\n"))
    assert verdict.outcome == "fail" and verdict.reason == "timeout", verdict
    assert time.monotonic() - t0 < TEST_TIMEOUT_S + 5
    assert_pool_still_serves(code_verifier)


def test_stdout_flood_is_an_output_limit_and_writes_no_host_logs(code_verifier, docker_client):
    verdict = run(code_verifier, stdio("while True:\n    print('x' * 100000)\n"))
    assert verdict.outcome == "fail" and verdict.reason == "output_limit", verdict
    pool = code_verifier._pool
    for warm in list(pool._all):
        attrs = docker_client.api.inspect_container(warm.container.id)
        assert attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        assert not attrs.get("LogPath"), "a log file on the host could fill its disk"
    assert_pool_still_serves(code_verifier)


def test_filling_tmp_and_dev_shm_stops_at_their_size_caps(solo):
    fill = """
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
    """
    verdict = run(solo, stdio(fill, [""], ["/tmp full True\n/dev/shm full True\n"]))
    assert verdict.is_pass, verdict  # both filled up and were refused at their caps (< 200 MB)
    clean = run(solo, stdio("import os\nprint(sorted(os.listdir('/tmp')), os.listdir('/dev/shm'))\n",
                            [""], ["['job'] []\n"]))
    assert clean.is_pass, clean
    assert_pool_still_serves(solo)


def test_writing_outside_scratch_is_refused(code_verifier):
    targets = ["/etc/passwd", "/opt/sandbox/runner.py", "/usr/local/lib/python3.11/os.py", "/evil",
               "/usr/local/bin/python3", "/proc/sys/kernel/hostname"]
    code = f"""
        for path in {targets!r}:
            try:
                with open(path, "a") as fh:
                    fh.write("owned")
                print("WROTE", path)
            except OSError:
                print("refused")
    """
    verdict = run(code_verifier, stdio(code, [""], ["refused\n" * len(targets)]))
    assert verdict.is_pass, verdict
    assert_pool_still_serves(code_verifier)


def test_a_daemon_does_not_outlive_its_job(solo):
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
    assert run(solo, stdio(daemon, [""], ["done\n"])).is_pass
    time.sleep(1.5)  # the daemon would have written its file by now
    check = """
        import os
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
        print(len(others), os.path.exists("/tmp/daemon_was_here"))
    """
    verdict = run(solo, stdio(check, [""], ["0 False\n"]))
    assert verdict.is_pass, verdict
    assert_pool_still_serves(solo)


def test_no_state_is_left_for_the_next_job(solo):
    leave = """
        import os
        open("/tmp/leftover", "w").write("x")
        open("/dev/shm/leftover", "w").write("x")
        os.makedirs("/tmp/locked/deeper")
        os.chmod("/tmp/locked", 0)
        os.environ["LEFTOVER"] = "1"
        os.putenv("LEFTOVER", "1")
        print("left")
    """
    assert run(solo, stdio(leave, [""], ["left\n"])).is_pass
    check = """
        import os
        print(sorted(os.listdir("/tmp")), os.listdir("/dev/shm"), "LEFTOVER" in os.environ)
    """
    verdict = run(solo, stdio(check, [""], ["['job'] [] False\n"]))
    assert verdict.is_pass, verdict
    assert_pool_still_serves(solo)


# ------------------------------------------------------------------------------------- escape attempts

def test_a_secret_file_on_the_host_cannot_be_read(code_verifier, tmp_path):
    secret = secrets.token_hex(16)
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    code = f"""
        found = []
        for p in [{str(path)!r}, "/proc/1/root" + {str(path)!r}, "/host" + {str(path)!r}]:
            try:
                found.append(open(p).read())
            except OSError:
                pass
        print(found[0] if found else "unreadable")
    """
    verdict = run(code_verifier, stdio(code, [""], ["unreadable\n"]))
    assert verdict.is_pass, verdict
    assert path.read_text() == secret
    assert_pool_still_serves(code_verifier)


def _bridge_gateway(docker_client) -> str | None:
    try:
        config = docker_client.api.inspect_network("bridge")["IPAM"]["Config"]
        return next((c["Gateway"] for c in config if c.get("Gateway")), None)
    except Exception:
        return None


def test_sockets_to_host_loopback_and_bridge_and_elsewhere_fail(code_verifier, docker_client):
    # TCP and UDP listeners on the host's loopback and on the Docker bridge gateway: the test fails
    # if anything from the sandbox reaches them. 192.0.2.1 (TEST-NET-1) is never routed anywhere.
    hits: list = []
    listeners = []
    targets = []
    gateway = _bridge_gateway(docker_client)
    for host in ["127.0.0.1"] + ([gateway] if gateway else []):
        tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            udp.bind((host, tcp.getsockname()[1]))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.listen(8)
        for sock in (tcp, udp):
            sock.settimeout(0.2)
            listeners.append(sock)
        targets.append((host, tcp.getsockname()[1]))
    targets.append(("192.0.2.1", 80))
    stop = threading.Event()

    def listen(sock: socket.socket) -> None:
        while not stop.is_set():
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, peer = sock.accept()
                    conn.close()
                else:
                    _, peer = sock.recvfrom(100)
                hits.append(peer)
            except (socket.timeout, OSError):
                pass

    threads = [threading.Thread(target=listen, args=(s,), daemon=True) for s in listeners]
    for t in threads:
        t.start()
    code = f"""
        import socket
        for host, port in {targets!r}:
            try:
                socket.create_connection((host, port), timeout=1)
                print("CONNECTED", host)
            except OSError:
                print("refused")
            try:  # UDP has no answer to wait for; the host's listeners tell whether it arrived
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (host, port))
            except OSError:
                pass
    """
    try:
        verdict = run(code_verifier, stdio(code, [""], ["refused\n" * len(targets)]))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in listeners:
            s.close()
    assert verdict.is_pass, verdict
    assert hits == [], f"the sandbox reached the host: {hits}"
    assert_pool_still_serves(code_verifier)


def test_kill_minus_one_cannot_kill_the_runner(code_verifier):
    before = code_verifier.health()["replaced"]
    verdict = run(code_verifier, stdio("import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\n"))
    assert verdict.outcome == "fail" and verdict.reason == "runtime_error", verdict
    assert code_verifier.health()["replaced"] == before  # PID 1 survived: no container was replaced
    assert_pool_still_serves(code_verifier)


def test_the_runner_process_is_out_of_reach(code_verifier):
    # Non-dumpable PID 1: its stdout (the channel to the host), memory and environment cannot be opened.
    code = """
        for path, mode in [("/proc/1/fd/1", "w"), ("/proc/1/fd/0", "r"), ("/proc/1/mem", "rb"),
                           ("/proc/1/environ", "rb")]:
            try:
                open(path, mode)
                print("OPENED", path)
            except OSError:
                print("refused")
    """
    verdict = run(code_verifier, stdio(code, [""], ["refused\n" * 4]))
    assert verdict.is_pass, verdict
    assert_pool_still_serves(code_verifier)


# ------------------------------------------------------------------------------------- reward hacking

@pytest.mark.parametrize("exit_call", ["import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit"])
def test_exiting_before_the_tests_run_fails(code_verifier, exit_call):
    verdict = run(code_verifier, humaneval(HE0["canonical_solution"] + "\n" + exit_call + "\n"))
    assert verdict.outcome == "fail", verdict
    assert_pool_still_serves(code_verifier)


def test_an_object_equal_to_everything_fails(code_verifier):
    always_equal = """
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            def __bool__(self):
                return True
            def __hash__(self):
                return 0
        return Anything()
    """
    verdict = run(code_verifier, humaneval(textwrap.indent(textwrap.dedent(always_equal), "    ")))
    assert verdict.outcome == "fail" and verdict.reason == "wrong_answer", verdict
    # The same object from an APPS call-based solution: compared outside, as plain data.
    call = CodeItem("call", textwrap.dedent("""
        class Anything(int):
            def __eq__(self, other):
                return True
        def is_prime(n):
            return Anything(7)
    """), {"style": "call", "fn_name": "is_prime", "inputs": [[1], [2]], "outputs": [[False], [True]]})
    assert run(code_verifier, call).reason == "wrong_answer"
    assert_pool_still_serves(code_verifier)


def test_patching_builtins_check_and_assert_helpers_fails(code_verifier):
    patcher = """
        import builtins, sys
        def check(candidate):
            return None
        builtins.check = check
        builtins.AssertionError = type("Harmless", (Exception,), {})
        builtins.abs = lambda x: 0
        builtins.isinstance = lambda *a: True
        builtins.len = lambda x: 0
        sys.settrace(lambda *a: None)
        sys.modules["math"] = None
        def has_close_elements(numbers, threshold):
            return None
    """
    verdict = run(code_verifier, humaneval("    pass\n" + textwrap.dedent(patcher)))
    # The patches break the candidate's own process (even its reply encoding); never the judge.
    assert verdict.outcome == "fail" and verdict.reason in ("wrong_answer", "runtime_error"), verdict
    assert_pool_still_serves(code_verifier)


def test_printing_marker_like_replies_fails(code_verifier):
    forger = """
        import json, os, sys
        fake = {"marker": "0" * 32, "tests": [{"i": 0, "status": "ok"}], "load": {"status": "ok"},
                "stop": "done", "candidate": {}}
        for stream in (sys.stdout, sys.stderr):
            for guess in ("0" * 32, "f" * 32):
                stream.write(json.dumps({**fake, "marker": guess}) + "\\n")
        for fd in (1, 2):
            os.write(fd, b'{"ev": "done"}\\n{"ev": "end", "i": 0, "status": "ok"}\\n')
        for fd in range(3, 64):
            try:
                os.write(fd, b'{"ok": true}\\n{"ev": "done"}\\n')
            except OSError:
                pass
        def has_close_elements(numbers, threshold):
            return None
    """
    verdict = run(code_verifier, humaneval("    pass\n" + textwrap.dedent(forger)))
    assert verdict.outcome == "fail", verdict
    assert_pool_still_serves(code_verifier)


def test_expected_outputs_cannot_be_read_from_the_harness(code_verifier):
    secret = secrets.randbelow(10 ** 12) + 10 ** 12  # unguessable expected answer
    snoop = """
        import gc, os, sys
        def _snoop():
            for obj in gc.get_objects():
                if isinstance(obj, dict) and "outputs" in obj:
                    return obj["outputs"][0]
            f = sys._getframe()
            while f is not None:
                for v in list(f.f_locals.values()) + list(f.f_globals.values()):
                    if isinstance(v, dict) and "outputs" in v:
                        return v["outputs"][0]
                f = f.f_back
            for root in ("/tmp", "/opt/sandbox", "/dev/shm"):
                for dirpath, _, files in os.walk(root):
                    for name in files:
                        try:
                            text = open(os.path.join(dirpath, name), errors="ignore").read()
                        except OSError:
                            continue
                        if "outputs" in text:
                            return text
            for path in ("/proc/1/environ", "/proc/1/cmdline", "/proc/1/mem"):
                try:
                    return open(path, "rb").read(100000).decode(errors="ignore")
                except OSError:
                    pass
            return None
    """
    call = CodeItem("snoop", textwrap.dedent(snoop) + "def answer(x):\n    return _snoop()\n",
                    {"style": "call", "fn_name": "answer", "inputs": [[1]], "outputs": [secret]})
    verdict = run(code_verifier, call)
    assert verdict.outcome == "fail" and verdict.reason == "wrong_answer", verdict
    stdin_snoop = CodeItem("snoop-stdio", textwrap.dedent(snoop) + "print(_snoop())\n",
                           {"style": "stdio", "inputs": ["1\n"], "outputs": [f"{secret}\n"]})
    verdict = run(code_verifier, stdin_snoop)
    assert verdict.outcome == "fail" and verdict.reason == "wrong_answer", verdict
    # HumanEval: the test's expected values live in the judge process, not in the candidate's frames.
    frames = """
        import sys
        f = sys._getframe(1)
        while f is not None:
            if "threshold" in str(f.f_locals):
                pass
            f = f.f_back
        return any(x is True for x in [])
    """
    verdict = run(code_verifier, humaneval(textwrap.indent(textwrap.dedent(frames), "    ")))
    assert verdict.outcome == "fail", verdict
    assert_pool_still_serves(code_verifier)


def test_killing_or_stopping_the_judge_process_fails(code_verifier):
    before = code_verifier.health()
    for sig in ("SIGKILL", "SIGSTOP"):
        attack = f"""
            import os, signal
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) not in (1, os.getpid()):
                    try:
                        os.kill(int(pid), signal.{sig})
                    except OSError:
                        pass
        """
        verdict = run(code_verifier, humaneval(HE0["canonical_solution"] + textwrap.dedent(attack)))
        assert verdict.outcome == "fail" and verdict.reason in ("runtime_error", "timeout"), (sig, verdict)
    after = code_verifier.health()
    # The runner handled both itself: no host deadline was missed, no container was replaced.
    assert (after.get("host_timeouts", 0), after["replaced"]) == (before.get("host_timeouts", 0), before["replaced"])
    assert_pool_still_serves(code_verifier)
