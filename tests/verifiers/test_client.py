"""``verifiers.client``: batching, retries with Retry-After, transport failures as ``error``, and
``RemoteVerifier`` giving the same verdicts as the local math verifier on real data.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_client.py
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from test_service_support import LiveServer, ScriptedVerifier, factory_for, free_port, math_items

from verifiers.client import RemoteVerifier, ServiceConfigError, VerifierClient
from verifiers.io import InputError
from verifiers.registry import get_verifier
from verifiers.service import Limits, ServiceSettings, create_app
from verifiers.verdict import Outcome, Verdict


def ok_response(request: httpx.Request) -> httpx.Response:
    items = json.loads(request.content)["items"]
    return httpx.Response(200, json={"elapsed_s": 0.0, "results": [
        {"id": it["id"], "domain": it["domain"], "verdict": "pass", "reason": "correct", "queued_s": 0.0,
         "elapsed_s": 0.0} for it in items]})


def items_of(n: int) -> list[dict]:
    return [{"id": i, "domain": "math", "reference": "1", "response": "1"} for i in range(n)]


class Recorder:
    """A mock transport: answers /v1/limits with 404 (an older server) and /v1/verify with
    the scripted responses in turn, then ``ok_response``."""

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.batches: list[int] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/limits":
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads(request.content)
        self.batches.append(len(body["items"] if "items" in body else body["pairs"]))
        self.times.append(time.monotonic())
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step(request) if callable(step) else step
        return ok_response(request)


def client_with(recorder: Recorder, **options) -> VerifierClient:
    # One request at a time, so that the scripted answers meet the batches in a known order.
    options.setdefault("backoff_s", 0.01)
    options.setdefault("concurrency", 1)
    return VerifierClient("http://verifier.test", transport=httpx.MockTransport(recorder), **options)


def test_large_inputs_are_split_into_batches_in_order() -> None:
    recorder = Recorder()
    with client_with(recorder, max_batch=4) as client:
        results = client.verify(items_of(10))
    assert recorder.batches == [4, 4, 2]
    assert [r.id for r in results] == list(range(10))


def test_batches_follow_the_servers_item_limit_and_concurrency() -> None:
    verifier = ScriptedVerifier(delay_s=0.01)
    app = create_app(ServiceSettings(domains=("math",), limits=Limits(max_items_per_request=3)),
                     verifier_factory=factory_for({"math": verifier}))
    items = [{"id": i, "domain": "math", "reference": "1", "response": "right" if i % 2 else "no"} for i in range(20)]
    with LiveServer(app) as url, VerifierClient(url, max_batch=100, concurrency=4) as client:
        results = client.verify(items)
    assert max(len(call) for call in verifier.calls) <= 3
    assert [r.id for r in results] == list(range(20))
    assert [r.verdict.value for r in results] == ["fail" if i % 2 == 0 else "pass" for i in range(20)]


def test_503_is_retried_after_retry_after() -> None:
    busy = httpx.Response(503, headers={"Retry-After": "1"},
                          json={"error": "queue_full", "message": "queue full", "limit": "max_queue_items"})
    recorder = Recorder(busy)
    with client_with(recorder, retries=3) as client:
        results = client.verify(items_of(2))
    assert [r.verdict for r in results] == [Outcome.PASS, Outcome.PASS]
    assert len(recorder.times) == 2 and recorder.times[1] - recorder.times[0] >= 0.95


def test_connection_errors_are_retried_with_backoff() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    with client_with(recorder, retries=2) as client:
        results = client.verify(items_of(3))
    assert len(recorder.batches) == 3 and all(r.verdict is Outcome.PASS for r in results)


def test_transport_failure_becomes_error_verdicts_never_fail() -> None:
    recorder = Recorder(*[httpx.ConnectError("refused")] * 10)
    with client_with(recorder, retries=2, max_batch=2) as client:
        results = client.verify(items_of(3))
    assert [(r.id, r.verdict, r.reason) for r in results] == [
        (0, Outcome.ERROR, "service_unavailable"), (1, Outcome.ERROR, "service_unavailable"),
        (2, Outcome.ERROR, "service_unavailable")]
    assert "refused" in results[0].message
    assert recorder.batches == [2, 2, 2, 1, 1, 1]  # every batch tried 1 + 2 times


def test_nothing_listening_is_error_verdicts() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    verifier = RemoteVerifier(url, "math", retries=1, backoff_s=0.01)
    verdicts = verifier.verify_batch([verifier.parse_item({"id": 1, "reference": "1", "response": "1"})])
    verifier.close()
    assert verdicts == [Verdict(Outcome.ERROR, "service_unavailable", verdicts[0].message)]


def test_persistent_5xx_becomes_error_verdicts() -> None:
    recorder = Recorder(*[httpx.Response(500, text="Internal Server Error")] * 5)
    with client_with(recorder, retries=1) as client:
        results = client.verify(items_of(1))
    assert results[0].verdict is Outcome.ERROR and "500" in results[0].message


def test_bad_items_get_error_and_the_rest_are_verified() -> None:
    # Against the real app and math verifier: one item the schema refuses, one the verifier's parser refuses.
    items = math_items(3)
    items.insert(1, {"id": "bad-type", "domain": "math", "reference": 7, "response": "7"})
    items.insert(4, {"id": "bad-format", "domain": "math", "reference": "7", "response": "7", "reference_format": "?"})
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": {"workers": 1}}))
    with LiveServer(app) as url, VerifierClient(url) as client:
        results = client.verify(items)
    assert [r.id for r in results] == [it["id"] for it in items]
    by_id = {r.id: r for r in results}
    assert (by_id["bad-type"].verdict, by_id["bad-type"].reason) == (Outcome.ERROR, "invalid_item")
    assert (by_id["bad-format"].verdict, by_id["bad-format"].reason) == (Outcome.ERROR, "invalid_item")
    assert "reference_format" in by_id["bad-format"].message
    others = [r for r in results if r.reason != "invalid_item"]
    assert {r.verdict for r in others} == {Outcome.PASS, Outcome.FAIL, Outcome.ERROR}


def test_too_many_items_for_the_server_halves_the_batch() -> None:
    too_many = httpx.Response(413, json={"error": "too_many_items", "message": "8 items, over max_items_per_request=4",
                                         "limit": "max_items_per_request"})
    recorder = Recorder(too_many)
    with client_with(recorder, max_batch=8) as client:
        results = client.verify(items_of(8))
    assert recorder.batches == [8, 4, 4] and [r.id for r in results] == list(range(8))


def test_wrong_token_raises_instead_of_silent_errors() -> None:
    unauthorized = httpx.Response(401, json={"error": "unauthorized", "message": "missing or wrong bearer token"})
    with client_with(Recorder(unauthorized)) as client, pytest.raises(ServiceConfigError, match="401"):
        client.verify(items_of(1))


def test_token_is_sent_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return ok_response(request) if request.url.path == "/v1/verify" else httpx.Response(404)

    monkeypatch.setenv("REST_EM_VERIFIER_TOKEN", "from-env")
    with VerifierClient("http://verifier.test", transport=httpx.MockTransport(handler)) as client:
        client.verify(items_of(1))
    assert seen and set(seen) == {"Bearer from-env"}


def test_remote_verifier_parse_item_validates_locally() -> None:
    verifier = RemoteVerifier("http://127.0.0.1:9", "math")
    try:
        item = verifier.parse_item({"id": "a", "reference": "1", "response": "x", "reference_format": "gsm8k"})
        assert item == {"id": "a", "reference": "1", "response": "x", "reference_format": "gsm8k", "domain": "math"}
        with pytest.raises(InputError, match=r"samples.jsonl:3: .*reference"):
            verifier.parse_item({"id": "a", "reference": 1, "response": "x"}, where="samples.jsonl:3")
        with pytest.raises(InputError, match="reference_format"):
            verifier.parse_item({"id": "a", "reference": "1", "response": "x", "reference_format": "?"}, where="r:1")
        with pytest.raises(InputError, match="code"):
            verifier.parse_item({"id": "a", "domain": "code", "response": "x", "tests": {}}, where="r:2")
    finally:
        verifier.close()


def test_remote_verifier_matches_the_local_verifier_on_real_data() -> None:
    rows = [{k: v for k, v in it.items() if k != "domain"} for it in math_items(15, offset=100)]
    local = get_verifier("math", workers=1)
    try:
        expected = local.verify_batch([local.parse_item(r, where=str(i)) for i, r in enumerate(rows)])
    finally:
        local.close()
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": {"workers": 1}},
                                     limits=Limits(chunk_items=8)))
    with LiveServer(app) as url:
        remote = RemoteVerifier(url, "math", max_batch=7, concurrency=2)
        try:
            got = remote.verify_batch([remote.parse_item(r, where=str(i)) for i, r in enumerate(rows)])
        finally:
            remote.close()
    assert got == expected


# -- issue #12: equivalent_batch through the service ------------------------------------------------

PAIRS = [
    ("1/2", "0.5"), ("2", "3"), (r"\frac{1}{2}", r"\dfrac12"), (r"\text{Evelyn}", "Evelyn"), ("x", ""),
    (r"2\sqrt{2}", r"\sqrt{8}"), ("(1, 2)", "(2, 1)"), (r"\{1, 2\}", r"\{2, 1\}"), ("1,000", "1000"),
    (r"x^2+2x+1", r"(x+1)^2"), (r"2\pi", "6.28"), ("m+2", "2 + m"), ("5", r"\boxed{5}"), ("-3", "3"),
]


def test_remote_equivalent_batch_matches_the_local_verifier() -> None:
    local = get_verifier("math", workers=1)
    try:
        expected = local.equivalent_batch(PAIRS)
    finally:
        local.close()
    assert True in expected and False in expected
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": {"workers": 1}},
                                     limits=Limits(chunk_items=4, max_items_per_request=5)))
    with LiveServer(app) as url:
        # batches of at most 5 (the server's limit, below max_batch), 2 at a time: order must hold
        with RemoteVerifier(url, "math", max_batch=64, concurrency=2) as remote:
            assert remote.equivalent_batch(PAIRS) == expected
            assert remote.equivalent_batch([]) == []


def equivalent_ok(request: httpx.Request) -> httpx.Response:
    pairs = json.loads(request.content)["pairs"]
    return httpx.Response(200, json={"elapsed_s": 0.0, "equivalent": [a == b for a, b in pairs]})


def test_equivalent_retries_503_and_splits_on_413() -> None:
    busy = httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "queue_full", "message": "busy"})
    split = httpx.Response(413, json={"error": "too_many_items", "message": "too many", "limit": "max_items_per_request"})
    recorder = Recorder(busy, split, equivalent_ok, equivalent_ok)
    with client_with(recorder) as client:
        assert client.equivalent([("1", "1"), ("1", "2"), ("3", "3")]) == [True, False, True]
    assert recorder.batches == [3, 3, 1, 2]  # retried after Retry-After, then halved


def test_equivalent_raises_when_the_service_stays_down() -> None:
    from verifiers.client import ServiceUnavailableError

    down = httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "queue_full", "message": "busy"})
    with client_with(Recorder(*[down] * 10), retries=2) as client:
        with pytest.raises(ServiceUnavailableError, match="could not compare 1 answer pairs"):
            client.equivalent([("1", "1")])
    with RemoteVerifier("http://127.0.0.1:9", "code") as remote:
        with pytest.raises(ValueError, match="compares math answers"):
            remote.equivalent_batch([("1", "1")])
