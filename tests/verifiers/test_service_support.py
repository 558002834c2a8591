"""Shared helpers for the verifier service tests (no tests here).

- real items built from ../shared/data (MATH500, GSM8K, HumanEval, MBPP) with right and wrong responses;
- ``LiveServer``: an app served by uvicorn in a thread on a free loopback port, for tests that need
  real concurrent HTTP (backpressure, fairness, the client);
- ``ScriptedVerifier``: a test double whose verify_batch blocks or sleeps on command, for the
  scheduling tests where the real verifiers' timing would make the test flaky.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import uvicorn

from verifiers.io import InputError
from verifiers.verdict import Verdict

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.is_dir():  # the checkout may live elsewhere; /work/shared/data is the documented home
    DATA = Path("/work/shared/data")


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def math_items(n_problems: int, offset: int = 0) -> list[dict[str, Any]]:
    """Right and wrong responses to MATH500 and GSM8K problems, as wire items (domain=math).

    Also one reference without an answer (an ``error`` verdict: unparseable reference)."""
    items: list[dict[str, Any]] = []
    math500 = read_jsonl(DATA / "math" / "math500.jsonl")[offset : offset + n_problems]
    for row in math500:
        uid = row["unique_id"]
        items.append({"id": f"{uid}/right", "domain": "math", "reference": row["solution"],
                      "reference_format": "math_solution", "response": row["solution"]})
        items.append({"id": f"{uid}/wrong", "domain": "math", "reference": row["answer"],
                      "response": f"So the final answer is $\\boxed{{{row['answer']}+1}}$."})
    gsm = read_jsonl(DATA / "gsm8k" / "test.jsonl", limit=offset + n_problems)[offset:]
    for i, row in enumerate(gsm):
        answer = row["answer"].rsplit("####", 1)[1].strip()
        items.append({"id": f"gsm8k/{offset + i}/right", "domain": "math", "reference": row["answer"],
                      "reference_format": "gsm8k", "response": row["answer"]})
        items.append({"id": f"gsm8k/{offset + i}/wrong", "domain": "math", "reference": row["answer"],
                      "reference_format": "gsm8k", "response": f"The answer is {answer}7."})
    items.append({"id": "no-box", "domain": "math", "reference": "a solution with no boxed answer",
                  "reference_format": "math_solution", "response": "\\boxed{3}"})
    return items


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``with LiveServer(app) as url:`` serves ``app`` on loopback until the block ends."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                lifespan="on", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


class ScriptedVerifier:
    """A verifier double: ``response`` "right" passes, anything else fails; ``delay_s`` per chunk,
    and ``gate`` (a threading.Event) blocks every chunk until set. Records the calls it gets."""

    def __init__(self, domain: str = "math", delay_s: float = 0.0, gate: threading.Event | None = None,
                 raise_on: str | None = None) -> None:
        self.domain = domain
        self.delay_s = delay_s
        self.gate = gate
        self.raise_on = raise_on
        self.calls: list[list[Any]] = []
        self.closed = False
        self._lock = threading.Lock()

    def parse_item(self, row: dict[str, Any], where: str = "") -> dict[str, Any]:
        if not isinstance(row.get("response"), str):
            raise InputError(f"{where}: 'response' must be str")
        return row

    def verify_batch(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        with self._lock:
            self.calls.append([item["id"] for item in items])
        if self.gate is not None:
            self.gate.wait(timeout=60)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.raise_on is not None and any(item["response"] == self.raise_on for item in items):
            raise RuntimeError("scripted verifier bug")
        return [Verdict.passed() if item["response"] == "right" else Verdict.failed("wrong_answer") for item in items]

    def close(self) -> None:
        self.closed = True


def factory_for(verifiers: dict[str, Any]) -> Callable[..., Any]:
    def factory(domain: str, **options: Any) -> Any:
        return verifiers[domain]
    return factory
