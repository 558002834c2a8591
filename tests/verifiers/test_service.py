"""The verifier service app (FastAPI TestClient / live uvicorn) with the real math verifier.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_service.py
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from test_service_support import LiveServer, ScriptedVerifier, factory_for, math_items

from verifiers.registry import get_verifier
from verifiers.service import Limits, ServiceSettings, create_app
from verifiers.service.app import TOKEN_ENV

MATH_OPTIONS = {"workers": 1, "timeout_s": 3.0}


@pytest.fixture(scope="module")
def math_client():
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": MATH_OPTIONS},
                                     limits=Limits(max_body_bytes=4 * 1024 * 1024, max_items_per_request=500,
                                                   max_text_chars=100_000, max_queue_items=2000)))
    with TestClient(app) as client:
        yield client


def in_process_verdicts(items: list[dict]) -> list[tuple[str, str, str]]:
    verifier = get_verifier("math", **MATH_OPTIONS)
    try:
        parsed = [verifier.parse_item({k: v for k, v in it.items() if k != "domain"}, where=str(i))
                  for i, it in enumerate(items)]
        return [(v.outcome.value, v.reason, v.message) for v in verifier.verify_batch(parsed)]
    finally:
        verifier.close()


def assert_still_serving(client: TestClient) -> None:
    r = client.post("/v1/verify", json={"items": [
        {"id": "ok", "domain": "math", "reference": "2", "response": "1+1 = \\boxed{2}"}]})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["verdict"] == "pass"


def test_verdicts_match_in_process_in_order(math_client: TestClient) -> None:
    items = math_items(12, offset=40)
    response = math_client.post("/v1/verify", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [it["id"] for it in items]
    got = [(r["verdict"], r["reason"], r["message"]) for r in results]
    assert got == in_process_verdicts(items)
    # The data gives all three outcomes: right responses pass, wrong fail, a reference without an answer errors.
    assert {g[0] for g in got} == {"pass", "fail", "error"}
    for r in results:
        assert r["domain"] == "math" and r["elapsed_s"] >= 0 and r["queued_s"] >= 0


@pytest.mark.parametrize(
    ("body", "status", "error", "needle"),
    [
        (b'{"items": [{"id": 1, "domain": "math", ', 400, "invalid_json", "not valid JSON"),
        (b'[1, 2]', 422, "invalid_request", "items"),
        (b'{"items": "x"}', 422, "invalid_request", "items"),
        (json.dumps({"items": [{"id": 1, "domain": "math", "reference": 5, "response": "x"}]}).encode(),
         422, "invalid_items", "items[0].reference"),
        (json.dumps({"items": [{"id": [1], "domain": "math", "reference": "5", "response": "x"}]}).encode(),
         422, "invalid_items", "items[0].id"),
        (json.dumps({"items": [{"id": 1, "domain": "chess", "response": "e4"}]}).encode(),
         422, "invalid_items", "'chess'"),
        (json.dumps({"items": [{"id": 1, "domain": "math", "response": "x"}]}).encode(),
         422, "invalid_items", "reference"),
        (json.dumps({"items": [{"id": 1, "domain": "math", "reference": "1", "response": "1",
                                "reference_format": "latex?"}]}).encode(), 422, "invalid_items", "reference_format"),
        (json.dumps({"items": [{"id": 1, "domain": "code", "response": "x", "tests": {}}]}).encode(),
         422, "invalid_items", "not served"),
    ],
    ids=["malformed-json", "not-an-object", "items-not-list", "reference-int", "id-list", "unknown-domain",
         "missing-field", "unknown-reference-format", "domain-not-served"],
)
def test_bad_input_gets_a_clear_4xx_and_service_keeps_serving(math_client, body, status, error, needle) -> None:
    r = math_client.post("/v1/verify", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["error"] == error
    assert needle in payload["message"], payload["message"]
    assert_still_serving(math_client)


def test_item_errors_name_every_bad_item(math_client: TestClient) -> None:
    items = [{"id": "a", "domain": "math", "reference": "1", "response": "1"},
             {"id": "b", "domain": "math", "reference": 1, "response": "1"},
             {"id": "c", "domain": "math", "reference": "1", "response": "1"},
             {"id": "d", "domain": "math", "reference": "1", "response": "1", "reference_format": "?"}]
    # Schema errors (wrong types) are found first, then what the math verifier's own parser refuses.
    r = math_client.post("/v1/verify", json={"items": items})
    assert r.status_code == 422
    assert [(e["index"], e["id"], e["field"]) for e in r.json()["errors"]] == [(1, "b", "reference")]
    items[1]["reference"] = "1"
    r = math_client.post("/v1/verify", json={"items": items})
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["index"], e["id"]) for e in errors] == [(3, "d")] and "reference_format" in errors[0]["message"]


def test_body_over_limit_is_413_naming_the_limit(math_client: TestClient) -> None:
    big = "x" * (4 * 1024 * 1024 + 1)
    r = math_client.post("/v1/verify", content=big.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["limit"] == "max_body_bytes" and "max_body_bytes=4194304" in r.json()["message"]

    # Without a Content-Length (chunked), the body is counted as it arrives.
    def chunks():
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    r = math_client.post("/v1/verify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes"
    assert_still_serving(math_client)


def test_too_many_items_is_413_naming_the_limit(math_client: TestClient) -> None:
    items = [{"id": i, "domain": "math", "reference": "1", "response": "1"} for i in range(501)]
    r = math_client.post("/v1/verify", json={"items": items})
    assert r.status_code == 413
    assert r.json()["limit"] == "max_items_per_request" and "501 items" in r.json()["message"]
    assert_still_serving(math_client)


def test_a_million_characters_of_latex_is_refused_with_the_limit_name(math_client: TestClient) -> None:
    latex = "\\frac{1}{2}+" * (10**6 // 12) + "\\boxed{1}"
    r = math_client.post("/v1/verify", json={"items": [
        {"id": "ok", "domain": "math", "reference": "1", "response": "\\boxed{1}"},
        {"id": "huge", "domain": "math", "reference": "1", "response": latex}]})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "item_too_large" and body["limit"] == "max_text_chars"
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["field"] == "response"
    assert_still_serving(math_client)


def test_a_million_characters_of_latex_within_a_raised_limit_is_a_verdict() -> None:
    # With the string cap raised past 10^6, the item reaches the math verifier, whose own killable
    # time limit still applies: the answer is a verdict (fail or error), never a hang or a 5xx.
    latex = "\\left(" * (10**6 // 6)
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": {"workers": 1, "timeout_s": 2.0}},
                                     limits=Limits(max_text_chars=2_000_000)))
    with TestClient(app) as client:
        started = time.monotonic()
        r = client.post("/v1/verify", json={"items": [
            {"id": "huge", "domain": "math", "reference": "\\frac{1}{2}", "response": f"$\\boxed{{{latex}}}$"},
            {"id": "ok", "domain": "math", "reference": "1", "response": "\\boxed{1}"}]})
        assert r.status_code == 200, r.text
        huge, ok = r.json()["results"]
        assert huge["verdict"] in ("fail", "error") and ok["verdict"] == "pass"
        assert time.monotonic() - started < 30
        assert_still_serving(client)


def test_healthz_metrics_docs(math_client: TestClient) -> None:
    math_client.post("/v1/verify", json={"items": math_items(2)})
    health = math_client.get("/healthz").json()
    assert health["status"] == "ok" and health["domains"]["math"]["status"] == "ok"
    assert health["domains"]["math"]["details"]["workers"] == MATH_OPTIONS["workers"]
    assert health["queue_depth"] == 0 and health["queue_capacity"] == 2000
    text = math_client.get("/metrics").text
    assert 'rest_em_verifier_verdicts_total{domain="math",reason="correct",verdict="pass"}' in text
    assert 'rest_em_verifier_verdicts_total{domain="math",reason="wrong_answer",verdict="fail"}' in text
    assert 'rest_em_verifier_request_seconds_bucket{le="0.5",path="/v1/verify"}' in text
    assert "rest_em_verifier_queue_depth 0.0" in text
    assert 'rest_em_verifier_requests_total{path="/v1/verify",status="200"}' in text
    assert math_client.get("/docs").status_code == 200
    assert "/v1/verify" in math_client.get("/openapi.json").json()["paths"]
    assert math_client.get("/v1/limits").json()["max_items_per_request"] == 500


def test_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    app = create_app(verifier_factory=factory_for({"math": ScriptedVerifier(), "code": ScriptedVerifier("code")}))
    item = {"id": 1, "domain": "math", "reference": "1", "response": "right"}
    with TestClient(app) as client:
        r = client.post("/v1/verify", json={"items": [item]})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert client.post("/v1/verify", json={"items": [item]},
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics").status_code == 401
        ok = client.post("/v1/verify", json={"items": [item]}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["verdict"] == "pass"
        assert client.get("/healthz").status_code == 200  # load balancers probe without a token


def test_queue_full_is_503_with_retry_after_and_memory_stays_bounded() -> None:
    gate = threading.Event()
    verifier = ScriptedVerifier(gate=gate)
    limits = Limits(max_items_per_request=8, max_queue_items=8, chunk_items=4, slots_per_domain=1)
    app = create_app(ServiceSettings(domains=("math",), limits=limits), verifier_factory=factory_for({"math": verifier}))
    items = [{"id": i, "domain": "math", "reference": "1", "response": "right"} for i in range(6)]
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        first = pool.submit(http.post, "/v1/verify", json={"items": items})
        deadline = time.monotonic() + 10
        while http.get("/healthz").json()["queue_depth"] < 6:
            assert time.monotonic() < deadline, "the first request was never admitted"
            time.sleep(0.02)
        second = http.post("/v1/verify", json={"items": items})
        assert second.status_code == 503
        assert int(second.headers["retry-after"]) >= limits.min_retry_after_s
        assert second.json()["limit"] == "max_queue_items"
        # A request that still fits is admitted while the queue is not full.
        small = pool.submit(http.post, "/v1/verify", json={"items": items[:2]})
        gate.set()
        assert first.result(timeout=30).status_code == 200
        assert small.result(timeout=30).status_code == 200
        assert "rest_em_verifier_rejections_total{reason=\"queue_full\"} 1.0" in http.get("/metrics").text
        assert http.get("/healthz").json()["queue_depth"] == 0


def test_a_long_request_does_not_starve_a_short_one() -> None:
    verifier = ScriptedVerifier(delay_s=0.05)
    limits = Limits(chunk_items=4, slots_per_domain=1)
    app = create_app(ServiceSettings(domains=("math",), limits=limits), verifier_factory=factory_for({"math": verifier}))
    long_items = [{"id": f"long{i}", "domain": "math", "reference": "1", "response": "right"} for i in range(160)]
    short_items = [{"id": "short", "domain": "math", "reference": "1", "response": "right"}]
    finished: dict[str, float] = {}

    def send(name: str, items: list[dict]) -> None:
        r = http.post("/v1/verify", json={"items": items})
        assert r.status_code == 200
        finished[name] = time.monotonic()

    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        long_job = pool.submit(send, "long", long_items)
        while len(verifier.calls) < 2:  # the long request is being worked on
            time.sleep(0.01)
        short_job = pool.submit(send, "short", short_items)
        short_job.result(timeout=30)
        long_job.result(timeout=30)
    # 40 chunks of 0.05 s: the short request must be served between chunks, not after all of them.
    assert finished["short"] < finished["long"]
    position = next(i for i, call in enumerate(verifier.calls) if call == ["short"])
    assert position < len(verifier.calls) // 2, f"short request ran as chunk {position} of {len(verifier.calls)}"


def test_verifier_bug_and_missing_domain_are_error_verdicts() -> None:
    def factory(domain: str, **options):
        if domain == "code":
            raise RuntimeError("docker SDK missing")
        return ScriptedVerifier(raise_on="boom")

    app = create_app(ServiceSettings(limits=Limits(chunk_items=1)), verifier_factory=factory)
    items = [{"id": "bug", "domain": "math", "reference": "1", "response": "boom"},
             {"id": "fine", "domain": "math", "reference": "1", "response": "right"},
             {"id": "code", "domain": "code", "response": "print(1)", "tests": {"style": "stdio", "cases": []}}]
    with TestClient(app) as client:
        results = client.post("/v1/verify", json={"items": items}).json()["results"]
        assert [(r["verdict"], r["reason"]) for r in results] == [
            ("error", "verifier_crashed"), ("pass", "correct"), ("error", "verifier_unavailable")]
        assert "docker SDK missing" in results[2]["message"]
        health = client.get("/healthz").json()
        assert health["status"] == "degraded" and health["domains"]["code"]["status"] == "unavailable"


def test_verifiers_are_closed_at_shutdown() -> None:
    verifier = ScriptedVerifier()
    with TestClient(create_app(ServiceSettings(domains=("math",)), verifier_factory=factory_for({"math": verifier}))):
        assert not verifier.closed
    assert verifier.closed


def test_settings_and_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_queue_items"):
        Limits(max_items_per_request=10, max_queue_items=5)
    with pytest.raises(ValueError, match="chunk_items"):
        Limits(chunk_items=0)
    with pytest.raises(ValueError, match="domains"):
        ServiceSettings(domains=("chess",))


def test_chunks_of_a_client_that_went_away_are_skipped() -> None:
    verifier = ScriptedVerifier(delay_s=0.1)
    limits = Limits(chunk_items=2, slots_per_domain=1)
    app = create_app(ServiceSettings(domains=("math",), limits=limits), verifier_factory=factory_for({"math": verifier}))
    items = [{"id": i, "domain": "math", "reference": "1", "response": "right"} for i in range(100)]
    with LiveServer(app) as url, httpx.Client(base_url=url) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/verify", json={"items": items}, timeout=0.5)
        deadline = time.monotonic() + 10
        while http.get("/healthz").json()["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.05)
        # 50 chunks of 0.1 s: without the check the service would keep working for ~5 s.
        assert http.get("/healthz").json()["queue_depth"] == 0
        assert len(verifier.calls) < 25, f"{len(verifier.calls)} chunks verified for a client that left"
        assert http.post("/v1/verify", json={"items": items[:2]}, timeout=10).status_code == 200


# -- issue #12: response_format per item, extracted_by, /v1/equivalent ------------------------------

def test_response_format_per_item(math_client: TestClient) -> None:
    items = [
        {"id": "bare", "domain": "math", "reference": "\\frac{1}{2}", "response": "\\dfrac{1}{2}",
         "response_format": "answer"},
        {"id": "bare-as-text", "domain": "math", "reference": "\\frac{1}{2}", "response": "\\dfrac{1}{2}"},
        {"id": "bare-wrong", "domain": "math", "reference": "\\frac{1}{2}", "response": "$0.25$",
         "response_format": "answer"},
        {"id": "text", "domain": "math", "reference": "3", "response": "so \\boxed{3}", "response_format": "text"},
    ]
    response = math_client.post("/v1/verify", json={"items": items})
    assert response.status_code == 200, response.text
    got = [(r["id"], r["verdict"], r["reason"], r["extracted_by"]) for r in response.json()["results"]]
    assert got == [("bare", "pass", "correct", "whole_response"), ("bare-as-text", "fail", "no_answer", None),
                   ("bare-wrong", "fail", "wrong_answer", "whole_response"), ("text", "pass", "correct", "last_boxed")]
    bad = math_client.post("/v1/verify", json={"items": [{**items[0], "response_format": "latex"}]})
    assert bad.status_code == 422 and "response_format" in bad.json()["message"], bad.text


EQUIVALENT_PAIRS = [
    ("1/2", "0.5"), ("2", "3"), (r"\frac{1}{2}", r"\dfrac12"), (r"\text{Evelyn}", "Evelyn"), ("x", ""),
    (r"2\sqrt{2}", r"\sqrt{8}"), ("(1, 2)", "(2, 1)"), (r"\{1, 2\}", r"\{2, 1\}"), ("1,000", "1000"),
    (r"x^2+2x+1", r"(x+1)^2"), (r"2\pi", "6.28"), ("m+2", "2 + m"),
]


def test_equivalent_endpoint_matches_the_in_process_verifier(math_client: TestClient) -> None:
    verifier = get_verifier("math", **MATH_OPTIONS)
    try:
        expected = verifier.equivalent_batch(EQUIVALENT_PAIRS)
    finally:
        verifier.close()
    assert expected == [True, False, True, True, False, True, False, True, True, True, False, True]
    response = math_client.post("/v1/equivalent", json={"pairs": [list(p) for p in EQUIVALENT_PAIRS]})
    assert response.status_code == 200, response.text
    assert response.json()["equivalent"] == expected
    assert math_client.post("/v1/equivalent", json={"pairs": []}).json()["equivalent"] == []
    bad = math_client.post("/v1/equivalent", json={"pairs": [["1"]]})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request", bad.text
    too_many = math_client.post("/v1/equivalent", json={"pairs": [["1", "1"]] * 501})
    assert too_many.status_code == 413 and too_many.json()["limit"] == "max_items_per_request"
    too_long = math_client.post("/v1/equivalent", json={"pairs": [["1", "1" * 100_001]]})
    assert too_long.status_code == 422 and too_long.json()["limit"] == "max_text_chars"


def test_equivalent_without_a_math_verifier_is_503() -> None:
    app = create_app(ServiceSettings(domains=("math",)), verifier_factory=lambda domain, **kw: 1 / 0)
    with TestClient(app) as client:
        response = client.post("/v1/equivalent", json={"pairs": [["1", "1"]]})
    assert response.status_code == 503 and response.json()["error"] == "verifier_unavailable", response.text
