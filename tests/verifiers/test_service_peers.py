"""The peers' protocols on the service, without Docker: OpenRLHF's ``/get_reward`` (real math verifier and a
scripted one for errors) and SandboxFusion's ``/run_code`` answers that need no sandbox (unsupported language,
no code lane, unsupported fields; the status mapping on a scripted ``run_program``).

Run: .venv/bin/python -m pytest -q tests/verifiers/test_service_peers.py
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from fastapi.testclient import TestClient
from test_service_support import LiveServer, ScriptedVerifier, factory_for, math_items

from verifiers.labels import LabelError, item_from_label, parse_label, response_from_query, strip_end_tokens
from verifiers.service import Limits, ServiceSettings, create_app
from verifiers.service.peers import RewardSettings
from verifiers.verdict import Verdict

MATH_OPTIONS = {"workers": 1, "timeout_s": 3.0}


class ErroringVerifier(ScriptedVerifier):
    """``right`` passes, ``boom`` is an error verdict (our side broke), anything else fails."""

    def verify_batch(self, items):
        return [Verdict.errored("sandbox_error", "scripted breakage") if it["response"] == "boom" else v
                for it, v in zip(items, super().verify_batch(items))]


class ScriptedRunner(ScriptedVerifier):
    """A code lane whose ``run_program`` answers from a table keyed by the code."""

    def __init__(self, table):
        super().__init__(domain="code")
        self.table = table
        self.runs = []

    def run_program(self, source, stdin="", timeout_s=None, memory_mb=None):
        self.runs.append((source, stdin, timeout_s, memory_mb))
        return {"stdout": "", "stderr": "", "exit": None, "signal": None, "elapsed_s": 0.01, "message": "",
                **self.table[source]}

    def health(self):
        return {"size": 2}


@pytest.fixture(scope="module")
def math_client():
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": MATH_OPTIONS},
                                     limits=Limits(max_items_per_request=300, max_text_chars=50_000)))
    with TestClient(app) as client:
        yield client


def reward_body(items: list[dict], prompt: str = "<|im_start|>user\nSolve it.<|im_end|>\n<|im_start|>assistant\n"):
    """OpenRLHF's body for /v1/verify items: the query is prompt + response (+ the EOS text it decodes)."""
    labels = [{k: v for k, v in it.items() if k not in ("id", "response")} for it in items]
    return {"query": [prompt + it["response"] + "<|im_end|>" for it in items], "prompts": [prompt] * len(items),
            "labels": labels}


# ------------------------------------------------------------------------------------------ labels

def test_label_convention():
    assert parse_label("\\frac{1}{2}") == {"domain": "math", "reference": "\\frac{1}{2}"}
    assert parse_label(42) == {"domain": "math", "reference": "42"}
    tests = {"style": "stdio", "inputs": ["1\n"], "outputs": ["2\n"]}
    assert parse_label(json.dumps({"tests": tests})) == {"domain": "code", "tests": tests}
    assert parse_label({"reference": 3, "reference_format": "answer"}) == {
        "domain": "math", "reference": "3", "reference_format": "answer"}
    assert item_from_label("4", "so 4", item_id=7) == {"id": 7, "domain": "math", "reference": "4", "response": "so 4"}
    for bad, needle in [("{nope", "not valid JSON"), ({"domain": "code"}, "needs 'tests'"), (None, "label must"),
                        ({"domain": "math"}, "needs 'reference'"), ([1], "string, a number or a JSON object")]:
        with pytest.raises(LabelError, match=needle):
            parse_label(bad)
    with pytest.raises(LabelError, match="code label"):
        parse_label("print(1)", default_domain="code")


def test_response_is_the_query_after_its_prompt_without_end_tokens():
    assert response_from_query("PROMPT answer", "PROMPT ") == "answer"
    assert response_from_query("<s>PROMPT answer", "PROMPT ") == "answer"  # a BOS before the prompt
    assert response_from_query("PROMPT answer", None) == "PROMPT answer"
    assert response_from_query("something else", "PROMPT") is None
    assert strip_end_tokens("x = 1\n<|im_end|><|endoftext|>\n") == "x = 1"
    assert strip_end_tokens("done</s>") == "done"
    assert strip_end_tokens("a <|im_end|> b") == "a <|im_end|> b"  # only a trailing run


# ------------------------------------------------------------------------------------- /get_reward

def test_get_reward_gives_the_same_verdicts_as_v1_verify(math_client):
    items = [it for it in math_items(10, offset=60) if it["id"] != "no-box"]
    verify = math_client.post("/v1/verify", json={"items": items})
    assert verify.status_code == 200, verify.text
    want = [r["verdict"] for r in verify.json()["results"]]
    r = math_client.post("/get_reward", json=reward_body(items))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [v["verdict"] for v in body["verdicts"]] == want
    assert body["rewards"] == [1.0 if w == "pass" else 0.0 for w in want] == body["scores"]
    assert body["extra_logs"]["verifier_pass"] == body["rewards"]
    assert body["extra_logs"]["verifier_error"] == [0.0] * len(items)
    assert {"pass", "fail"} <= set(want)


def test_get_reward_label_forms(math_client):
    r = math_client.post("/get_reward", json={
        "query": ["Q: 1+1? A: \\boxed{2}", "Q: 1+1? A: \\boxed{3}", "Q: half? The answer is \\boxed{0.5}"],
        "prompts": ["Q: 1+1? A: ", "Q: 1+1? A: ", "Q: half? "],
        "labels": [2, "2", json.dumps({"domain": "math", "reference": "\\frac{1}{2}"})]})
    assert r.status_code == 200, r.text
    assert r.json()["rewards"] == [1.0, 0.0, 1.0]
    # Without prompts the whole query is the response; an empty batch is an empty answer.
    assert math_client.post("/get_reward", json={"query": ["\\boxed{7}"], "labels": ["7"]}).json()["rewards"] == [1.0]
    empty = math_client.post("/get_reward", json={"query": [], "prompts": [], "labels": []})
    assert empty.status_code == 200 and empty.json()["rewards"] == []


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"query": ["a", "b"], "prompts": ["a"], "labels": ["1", "2"]}, 422, "1 prompts for 2 queries"),
    ({"query": ["a"], "prompts": ["a"]}, 422, "labels are needed"),
    ({"query": ["a x"], "prompts": ["b"], "labels": ["1"]}, 422, "prompt is not part of the query"),
    ({"query": ["a x"], "prompts": ["a"], "labels": ["{bad json"]}, 422, "not valid JSON"),
    ({"query": ["a x"], "prompts": ["a"], "labels": [{"domain": "code"}]}, 422, "needs 'tests'"),
    ({"query": ["a x"], "prompts": ["a"], "labels": [{"domain": "code", "tests": {"style": "stdio"}}]}, 422,
     "not served here"),
    ({"query": "a", "labels": ["1"]}, 422, "query"),
    ({"query": ["x"] * 301, "labels": ["1"] * 301}, 413, "max_items_per_request=300"),
    ({"query": ["x" * 50_001], "labels": ["1"]}, 422, "max_text_chars=50000"),
])
def test_get_reward_refuses_bad_batches_naming_the_query(math_client, body, status, needle):
    r = math_client.post("/get_reward", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"], r.json()


def test_a_batch_over_the_error_limit_gets_503_and_under_it_errors_are_counted():
    verifier = ErroringVerifier()
    for settings, status in [(RewardSettings(), 503), (RewardSettings(max_error_rate=0.25, error_score=-1.0), 200)]:
        app = create_app(ServiceSettings(domains=("math",), reward=settings), verifier_factory=factory_for({"math": verifier}))
        with TestClient(app) as client:
            body = {"query": ["P right", "P boom", "P wrong", "P right"], "prompts": ["P "] * 4, "labels": ["1"] * 4}
            r = client.post("/get_reward", json=body)
            assert r.status_code == status, r.text
            if status == 503:
                assert r.headers["Retry-After"] == "1"
                err = r.json()
                assert err["error"] == "verifier_errors" and err["limit"] == "reward_max_error_rate"
                assert "1 of 4 items" in err["message"] and "query[1]: sandbox_error" in err["message"]
                assert [e["index"] for e in err["errors"]] == [1]
                metrics = client.get("/metrics").text
                assert 'rest_em_verifier_rejections_total{reason="error_rate"} 1.0' in metrics
                assert 'rest_em_verifier_requests_total{path="/get_reward",status="503"} 1.0' in metrics
            else:
                out = r.json()
                assert out["rewards"] == [1.0, -1.0, 0.0, 1.0]
                assert out["extra_logs"]["verifier_error"] == [0.0, 1.0, 0.0, 0.0]
                assert out["verdicts"][1]["reason"] == "sandbox_error"
            # Two errors in four (50 %) are over both limits.
            body["query"][2] = "P boom"
            assert client.post("/get_reward", json=body).status_code == 503


def test_openrlhf_retry_loop_gets_the_reward_after_a_transient_error():
    """OpenRLHF's _post_request (agent.py, 0.11): aiohttp, raise_for_status, 5 tries 1 s apart. The first try
    meets a sandbox error (503); the retry is answered."""
    aiohttp = pytest.importorskip("aiohttp")
    verifier = ErroringVerifier()
    calls = {"n": 0}
    original = verifier.verify_batch

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            return [Verdict.errored("sandbox_unavailable", "warming up") for _ in items]
        return original(items)

    verifier.verify_batch = flaky
    app = create_app(ServiceSettings(domains=("math",), token="s3cret"), verifier_factory=factory_for({"math": verifier}))

    async def post_request(url, data, try_max_times=5):
        timeout = aiohttp.ClientTimeout(total=180)
        for _ in range(try_max_times):
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.post(url, json=data) as response:
                        response.raise_for_status()
                        return await response.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
        raise RuntimeError("gave up")

    with LiveServer(app) as url:
        data = {"query": ["<s>Q right</s>"], "prompts": ["Q "], "labels": ["x"]}
        with pytest.raises(RuntimeError, match="gave up"):  # the token travels in the URL; without it: 401
            asyncio.run(post_request(f"{url}/get_reward", data, try_max_times=1))
        got = asyncio.run(post_request(f"{url}/get_reward?token=s3cret", data))
    assert got["rewards"] == [1.0] and got["scores"] == [1.0] and got["extra_logs"]["verifier_error"] == [0.0]
    assert calls["n"] == 2


def test_peer_endpoints_take_the_token_as_bearer_or_query():
    app = create_app(ServiceSettings(domains=("math",), token="t0k"), verifier_factory=factory_for({"math": ScriptedVerifier()}))
    body = {"query": ["right"], "labels": ["1"]}
    with TestClient(app) as client:
        assert client.post("/get_reward", json=body).status_code == 401
        assert client.post("/get_reward?token=wrong", json=body).status_code == 401
        assert client.post("/get_reward?token=t0k", json=body).json()["rewards"] == [1.0]
        assert client.post("/get_reward", json=body, headers={"Authorization": "Bearer t0k"}).status_code == 200
        assert client.post("/run_code", json={"code": "1", "language": "python"}).status_code == 401
        assert client.post("/run_code?token=t0k", json={"code": "1", "language": "python"}).status_code == 200
        # The native endpoints keep bearer-only auth.
        assert client.post("/v1/verify?token=t0k", json={"items": []}).status_code == 401


# --------------------------------------------------------------------------------------- /run_code

RUN_TABLE = {
    "ok": {"status": "ok", "stdout": "hi\n", "exit": 0},
    "raise": {"status": "runtime_error", "stderr": "ValueError", "exit": 1},
    "loop": {"status": "timeout", "elapsed_s": 1.5},
    "hog": {"status": "memory", "signal": 9},
    "flood": {"status": "output_limit", "stdout": "x" * 10, "signal": 9},
    "broken": {"status": "sandbox_error", "message": "the runner died"},
}


@pytest.fixture(scope="module")
def run_client():
    runner = ScriptedRunner(RUN_TABLE)
    app = create_app(ServiceSettings(domains=("math", "code"), limits=Limits(max_text_chars=1000)),
                     verifier_factory=factory_for({"math": ScriptedVerifier(), "code": runner}))
    with TestClient(app) as client:
        yield client, runner


@pytest.mark.parametrize(("code", "status", "run_status", "return_code"), [
    ("ok", "Success", "Finished", 0),
    ("raise", "Failed", "Finished", 1),
    ("loop", "Failed", "TimeLimitExceeded", None),
    ("hog", "Failed", "Finished", -9),
    ("flood", "Failed", "Finished", -9),
])
def test_run_code_maps_runner_outcomes_to_sandboxfusion_statuses(run_client, code, status, run_status, return_code):
    client, runner = run_client
    r = client.post("/run_code", json={"code": code, "language": "python", "stdin": "in", "run_timeout": 3,
                                       "memory_limit_MB": 256, "compile_timeout": 10, "files": {}, "fetch_files": []})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == status and body["compile_result"] is None and body["files"] == {}
    assert body["run_result"]["status"] == run_status and body["run_result"]["return_code"] == return_code
    assert runner.runs[-1] == (code, "in", 3.0, 256)
    if code == "ok":
        assert body["run_result"]["stdout"] == "hi\n"
    if code in ("hog", "flood"):
        assert "[sandbox]" in body["run_result"]["stderr"]


def test_run_code_sandbox_side_problems_are_sandbox_errors(run_client):
    client, runner = run_client
    broken = client.post("/run_code", json={"code": "broken", "language": "python"}).json()
    assert broken["status"] == "SandboxError" and "runner died" in broken["message"] and broken["run_result"] is None
    before = len(runner.runs)
    files = client.post("/run_code", json={"code": "ok", "language": "python", "files": {"a.txt": "aGk="}}).json()
    assert files["status"] == "SandboxError" and "'files' is not supported" in files["message"]
    fetch = client.post("/run_code", json={"code": "ok", "language": "python", "fetch_files": ["out.txt"]}).json()
    assert fetch["status"] == "SandboxError" and "fetch_files" in fetch["message"]
    assert len(runner.runs) == before  # neither ran
    metrics = client.get("/metrics").text
    assert 'rest_em_verifier_run_code_total{run_status="none",status="SandboxError"}' in metrics


@pytest.mark.parametrize("language", ["cpp", "python2", "nodejs", "Python"])
def test_other_languages_get_sandboxfusions_own_unsupported_answer(run_client, language):
    client, runner = run_client
    before = len(runner.runs)
    r = client.post("/run_code", json={"code": "int main(){}", "language": language})
    assert r.status_code == 422
    (detail,) = r.json()["detail"]  # FastAPI's default shape, as SandboxFusion answers a language it lacks
    assert detail["type"] == "literal_error" and detail["loc"] == ["body", "language"] and detail["input"] == language
    assert len(runner.runs) == before


def test_run_code_limits_and_missing_code_lane(run_client):
    client, _ = run_client
    r = client.post("/run_code", json={"code": "x" * 1001, "language": "python"})
    assert r.status_code == 422 and r.json()["limit"] == "max_text_chars"
    assert client.post("/run_code", json={"language": "python"}).status_code == 422
    app = create_app(ServiceSettings(domains=("math",)), verifier_factory=factory_for({"math": ScriptedVerifier()}))
    with TestClient(app) as math_only:
        body = math_only.post("/run_code", json={"code": "print(1)", "language": "python"}).json()
    assert body["status"] == "SandboxError" and "does not serve code" in body["message"]


def test_run_code_jobs_use_the_pool_not_the_verify_slots(run_client):
    """Concurrent /run_code calls run side by side on the job executor sized to the pool (2 here)."""
    gate = threading.Event()
    active, peak = [0], [0]
    lock = threading.Lock()
    runner = ScriptedRunner({"wait": {"status": "ok"}})
    original = runner.run_program

    def slow(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        gate.wait(timeout=10)
        with lock:
            active[0] -= 1
        return original(*args)

    runner.run_program = slow
    app = create_app(ServiceSettings(domains=("code",), limits=Limits(slots_per_domain=1)),
                     verifier_factory=factory_for({"code": runner}))
    with LiveServer(app) as url:
        import httpx

        with httpx.Client(timeout=30) as http:
            threads = [threading.Thread(target=http.post, args=(f"{url}/run_code",),
                                        kwargs={"json": {"code": "wait", "language": "python"}}) for _ in range(3)]
            for t in threads:
                t.start()
            deadline = threading.Event()
            for _ in range(100):
                if peak[0] >= 2:
                    break
                deadline.wait(0.05)
            gate.set()
            for t in threads:
                t.join()
    assert peak[0] == 2  # two at once (the pool's size), though the code lane has one verify slot


# ------------------------------------------------------------------------------- start-up and CLI

def test_listening_while_warming_holds_requests_until_the_verifiers_are_up():
    gate = threading.Event()

    class SlowStart(ScriptedVerifier):
        def start(self):
            gate.wait(timeout=30)

    app = create_app(ServiceSettings(domains=("math",), warm_before_listening=False),
                     verifier_factory=factory_for({"math": SlowStart()}))
    import httpx

    with LiveServer(app) as url:  # the port is open although start() has not returned
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        assert health["status"] == "degraded" and health["domains"] == {}
        answer: dict = {}
        thread = threading.Thread(target=lambda: answer.update(
            httpx.post(f"{url}/get_reward", json={"query": ["right"], "labels": ["1"]}, timeout=30).json()))
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not answer  # held, not refused
        gate.set()
        thread.join(timeout=30)
        assert answer["rewards"] == [1.0]
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"


def test_serve_verifier_flags_reach_the_service(monkeypatch):
    import uvicorn

    from rest_em.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(settings=app.state.service.settings))
    assert main(["serve-verifier", "--domains", "math", "--reward-max-error-rate", "0.1",
                 "--reward-error-score", "-1"]) == 0
    settings = seen["settings"]
    assert settings.reward == RewardSettings(max_error_rate=0.1, error_score=-1.0)
    assert settings.warm_before_listening is False
    assert main(["serve-verifier", "--domains", "math", "--warm-before-listening"]) == 0
    assert seen["settings"].warm_before_listening is True
    assert main(["serve-verifier", "--domains", "math", "--reward-max-error-rate", "1.5"]) == 2
