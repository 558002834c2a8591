"""The real ``rest-em serve-verifier`` process: it serves on loopback, and SIGTERM while a request is
in flight lets that request finish before the process exits.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_service_process.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_service_support import free_port, math_items

ROOT = Path(__file__).resolve().parents[2]


def start_server(port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rest_em.cli", "-v", "serve-verifier", "--port", str(port), "--domains", "math",
           "--workers", "1", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port``, from /proc/net/tcp."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        hex_ip, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            addresses.add(".".join(str(b) for b in reversed(bytes.fromhex(hex_ip))))
    return addresses


@pytest.fixture
def server_port():
    port = free_port()
    procs: list[subprocess.Popen] = []
    yield port, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigterm_finishes_the_request_in_flight(server_port) -> None:
    port, procs = server_port
    url = f"http://127.0.0.1:{port}"
    # Small chunks and one worker: the batch below takes a few seconds, long enough to be caught mid-way.
    proc = start_server(port, "--chunk-items", "8", "--slots-per-domain", "1")
    procs.append(proc)
    wait_healthy(url, proc)

    items = math_items(150)  # 600 real MATH500/GSM8K items
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["response"] = httpx.post(f"{url}/v1/verify", json={"items": items}, timeout=120)
            outcome["answered_at"] = time.monotonic()
        except Exception as exc:  # recorded and asserted on below
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/healthz", timeout=5).json()["in_flight_requests"] < 1:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    sender.join(timeout=120)

    assert "error" not in outcome, outcome.get("error")
    response = outcome["response"]
    assert response.status_code == 200
    assert outcome["answered_at"] > signalled_at, "the request was not in flight when SIGTERM arrived"
    results = response.json()["results"]
    assert [r["id"] for r in results] == [it["id"] for it in items]
    assert all(r["reason"] != "verifier_unavailable" for r in results)
    # uvicorn re-raises the signal once it has shut down cleanly, so the status says "ended by SIGTERM".
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    log = proc.stdout.read()
    assert "verifier service stopped" in log
    # It stopped accepting: nothing listens on the port any more.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_binds_loopback_and_reads_the_token_from_the_environment(server_port) -> None:
    port, procs = server_port
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, env={"REST_EM_VERIFIER_TOKEN": "tok"})
    procs.append(proc)
    wait_healthy(url, proc)
    assert listening_addresses(port) == {"127.0.0.1"}
    item = {"items": [{"id": 1, "domain": "math", "reference": "1", "response": "\\boxed{1}"}]}
    assert httpx.post(f"{url}/v1/verify", json=item).status_code == 401
    r = httpx.post(f"{url}/v1/verify", json=item, headers={"Authorization": "Bearer tok"})
    assert r.status_code == 200 and r.json()["results"][0]["verdict"] == "pass"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "verifier service stopped" in proc.stdout.read()


@pytest.mark.parametrize(("args", "message"), [
    (["--domains", "math", "--set", "chess.depth=3"], "domain 'chess' is not served"),
    (["--domains", "math", "--set", "timeout_s=3"], "expected DOMAIN.KEY=VALUE"),
    (["--domains", "code", "--workers", "2"], "serves no math"),
    (["--domains", "math", "--max-items-per-request", "100", "--max-queue-items", "10"], "max_queue_items"),
])
def test_bad_options_exit_with_a_message(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "rest_em.cli", "serve-verifier", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
