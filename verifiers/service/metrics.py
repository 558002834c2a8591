"""Prometheus metrics of the verifier service, served as text at ``GET /metrics``.

Each app gets its own registry, so two apps in one process (tests) do not share counters;
``RequestMetricsMiddleware`` counts and times every HTTP request, 413s from the body-size check included.

``rest_em_verifier_requests_total{path,status}``            HTTP requests answered
``rest_em_verifier_request_seconds{path}``                  request latency histogram
``rest_em_verifier_verdicts_total{domain,verdict,reason}``  verdicts given
``rest_em_verifier_chunk_seconds{domain}``                  wall time of one verify_batch call
``rest_em_verifier_queue_depth``                            items admitted and not yet answered
``rest_em_verifier_queue_capacity``                         the max_queue_items limit
``rest_em_verifier_in_flight_requests``                     verify requests being served
``rest_em_verifier_rejections_total{reason}``               requests refused (queue_full, body_too_large, error_rate, ...)
``rest_em_verifier_run_code_total{status,run_status}``       /run_code answers (Success/Failed/SandboxError, Finished/TimeLimitExceeded/none)
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from verifiers.verdict import Verdict

# Paths that get their own label; anything else is counted as "other" so that a scan of random URLs
# cannot blow up the number of series.
KNOWN_PATHS = ("/v1/verify", "/v1/equivalent", "/get_reward", "/run_code", "/healthz", "/metrics", "/docs", "/openapi.json")

# Latency buckets (seconds) from a single cached math item up to a large code batch.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, queue_depth: Callable[[], int], queue_capacity: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rest_em_verifier_requests", "HTTP requests answered", ["path", "status"], registry=r)
        self.request_seconds = Histogram(
            "rest_em_verifier_request_seconds", "Request latency", ["path"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.verdicts = Counter(
            "rest_em_verifier_verdicts", "Verdicts given", ["domain", "verdict", "reason"], registry=r
        )
        self.chunk_seconds = Histogram(
            "rest_em_verifier_chunk_seconds", "Wall time of one verify_batch call", ["domain"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("rest_em_verifier_queue_depth", "Items admitted and not yet answered", registry=r)
        self.queue_depth.set_function(lambda: float(queue_depth()))
        capacity = Gauge("rest_em_verifier_queue_capacity", "Most items admitted at once", registry=r)
        capacity.set(queue_capacity)
        self.in_flight = Gauge("rest_em_verifier_in_flight_requests", "Verify requests being served", registry=r)
        self.rejections = Counter("rest_em_verifier_rejections", "Requests refused", ["reason"], registry=r)
        self.run_code = Counter("rest_em_verifier_run_code", "/run_code answers", ["status", "run_status"], registry=r)

    @staticmethod
    def path_label(path: str) -> str:
        return path if path in KNOWN_PATHS else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        label = self.path_label(path)
        self.requests.labels(path=label, status=str(status)).inc()
        self.request_seconds.labels(path=label).observe(seconds)

    def observe_verdicts(self, domain: str, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self.verdicts.labels(domain=domain, verdict=v.outcome.value, reason=v.reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts every HTTP request by path and status and times it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - started)
