"""The service with the real code verifier (Docker sandbox): real HumanEval/MBPP verdicts, a program
that floods its output, and a sandbox container killed in the middle of a request.

Marked ``docker`` (tests/conftest.py): skipped with a reason when no Docker engine answers, failed
instead when REST_EM_REQUIRE_DOCKER=1.
Run: .venv/bin/python -m pytest -q tests/verifiers/test_service_docker.py
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from test_service_support import DATA, read_jsonl

from sandbox.pool import OWNER_LABEL
from verifiers.code.datasets import humaneval_tests, mbpp_tests
from verifiers.service import Limits, ServiceSettings, create_app

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def code_app(sandbox_image):
    # sandbox_image (tests/conftest.py) skips without Docker, or fails under REST_EM_REQUIRE_DOCKER=1.
    app = create_app(ServiceSettings(
        domains=("math", "code"),
        verifier_options={"math": {"workers": 1},
                          "code": {"image": sandbox_image, "pool_size": 2, "timeout_per_test_s": 20.0,
                                   "timeout_per_problem_s": 30.0}},
        limits=Limits(chunk_items=4),
    ))
    with TestClient(app) as client:
        yield app, client


def humaneval_items(n: int) -> list[dict]:
    items = []
    for row in read_jsonl(DATA / "humaneval" / "HumanEval.jsonl", limit=n):
        tests = humaneval_tests(row)
        items.append({"id": f"{row['task_id']}/canonical", "domain": "code", "response": row["canonical_solution"],
                      "tests": tests})
        items.append({"id": f"{row['task_id']}/broken", "domain": "code", "response": "    return None\n",
                      "tests": tests})
    return items


def test_real_code_and_math_items_in_one_request(code_app) -> None:
    _, client = code_app
    mbpp = read_jsonl(DATA / "mbpp" / "mbpp.jsonl")[10:13]
    items = humaneval_items(3) + [
        {"id": f"mbpp/{row['task_id']}", "domain": "code", "response": row["code"], "tests": mbpp_tests(row)}
        for row in mbpp
    ] + [{"id": "m", "domain": "math", "reference": "\\frac{1}{2}", "response": "\\boxed{0.5}"}]
    r = client.post("/v1/verify", json={"items": items})
    assert r.status_code == 200, r.text
    got = [(x["id"], x["verdict"]) for x in r.json()["results"]]
    want = [(it["id"], "fail" if it["id"].endswith("broken") else "pass") for it in items]
    assert got == want
    health = client.get("/healthz").json()
    assert health["domains"]["code"]["status"] == "ok" and health["domains"]["code"]["details"]["alive"] == 2


def test_a_program_that_floods_its_output_is_a_fail_and_service_keeps_serving(code_app) -> None:
    _, client = code_app
    flood = {"id": "flood", "domain": "code",
             "response": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
             "tests": {"style": "stdio", "inputs": [""], "outputs": ["x"]}}
    started = time.monotonic()
    r = client.post("/v1/verify", json={"items": [flood]})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["verdict"] == "fail" and result["reason"] in ("output_limit", "timeout"), result
    assert time.monotonic() - started < 60
    again = client.post("/v1/verify", json={"items": humaneval_items(1)[:1]})
    assert again.json()["results"][0]["verdict"] == "pass"


def test_killing_a_sandbox_container_mid_request_errors_that_item_only(code_app) -> None:
    import docker

    _, client = code_app
    # The sandbox pool labels its containers with their owner, "<host>:<pid>" of this test process.
    owner = f"{OWNER_LABEL}={socket.gethostname()}:{os.getpid()}"
    engine = docker.from_env()
    # One item sleeps long enough to be caught running; the rest are ordinary HumanEval solutions.
    # The sleeping item runs a child whose command line carries a marker, so the container running it
    # can be told apart from the one running the ordinary HumanEval solutions.
    sleeper = {"id": "sleeper", "domain": "code",
               "response": ("import subprocess, sys\n"
                            "subprocess.run([sys.executable, '-c', 'import time; time.sleep(12)', 'kill-me-marker'])\n"
                            "print('done')\n"),
               "tests": {"style": "stdio", "inputs": [""], "outputs": ["done"]}}
    items = [sleeper] + humaneval_items(4)
    outcome: dict[str, object] = {}
    sender = threading.Thread(target=lambda: outcome.update(r=client.post("/v1/verify", json={"items": items})))
    sender.start()

    def busy_container():
        for c in engine.containers.list(filters={"label": owner}):
            try:
                if "kill-me-marker" in json.dumps(c.top()):
                    return c
            except Exception:  # a container replaced under our feet
                continue
        return None

    deadline = time.monotonic() + 30
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = busy_container()
        time.sleep(0.2)
    assert victim is not None, "never saw the sleeping candidate in a sandbox container"
    victim.kill()
    sender.join(timeout=120)
    response = outcome["r"]
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["id"] == "sleeper"
    assert (results[0]["verdict"], results[0]["reason"]) == ("error", "sandbox_error"), results[0]
    assert [(x["id"], x["verdict"]) for x in results[1:]] == [
        (it["id"], "fail" if it["id"].endswith("broken") else "pass") for it in items[1:]]
    # The pool replaced the container: the next request is served normally.
    after = client.post("/v1/verify", json={"items": humaneval_items(2)})
    assert [x["verdict"] for x in after.json()["results"]] == ["pass", "fail", "pass", "fail"]
