"""Client of the verifier service (``rest-em serve-verifier``), with the server's own wire models.

    from verifiers.client import VerifierClient, RemoteVerifier

    with VerifierClient("http://127.0.0.1:8000", max_batch=256) as client:
        results = client.verify([{"id": "p1/0", "domain": "math", "reference": "42", "response": "... 42"}])
        results[0].verdict, results[0].reason          # Outcome.PASS, "correct"

        client.equivalent([("1/2", "0.5"), ("2", "3")])  # [True, False]: the math verifier's equivalent_batch

    # The registry's Verifier protocol, so the pipeline can swap it in for a local verifier:
    verifier = RemoteVerifier("http://10.0.0.5:8000", domain="code", token="...")
    verdicts = verifier.verify_batch([verifier.parse_item(row, where="samples.jsonl:3") for row in rows])

Behaviour:

- Large inputs are split into requests of at most ``max_batch`` items (further capped by the server's
  ``max_items_per_request``, read from ``/v1/limits``); up to ``concurrency`` requests are in flight.
- Connection errors, timeouts and 502/503/504 answers are retried ``retries`` times with exponential
  backoff, honouring ``Retry-After``. Verification is a pure function of the item, so a retried
  request can never count twice.
- When the service stays unreachable, the affected items get ``error`` verdicts
  (``service_unavailable``), never ``fail``: a broken network is our side, not the model's.
- A 422 naming bad items gives those items ``error`` (``invalid_item``) and sends the others again;
  a 413 for too many items halves the batch. 401/403/404 raise :class:`ServiceConfigError`: a wrong
  token or URL is a configuration mistake that no retry fixes, and silently turning a whole run
  into ``error`` verdicts would hide it.

``equivalent(pairs)`` (POST ``/v1/equivalent``) batches and retries the same way, but a boolean has
no ``error`` value: when the service stays unreachable or refuses the pairs it raises
:class:`ServiceUnavailableError` instead of guessing, so maj@k is never computed from made-up answers.

The token defaults to the ``REST_EM_VERIFIER_TOKEN`` environment variable.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import httpx
from pydantic import ValidationError

from verifiers.io import InputError
from verifiers.service.models import (
    KNOWN_DOMAINS,
    CodeItem,
    CustomItem,
    EquivalentResponse,
    ErrorResponse,
    MathItem,
    VerifyRequest,
    VerifyResponse,
    VerifyResult,
)
from verifiers.verdict import Verdict

logger = logging.getLogger(__name__)

TOKEN_ENV = "REST_EM_VERIFIER_TOKEN"
_RETRY_STATUSES = frozenset({502, 503, 504})
# Seconds to wait for GET /v1/limits (a small answer; a host that does not answer soon is down).
LIMITS_TIMEOUT_S = 10.0

__all__ = [
    "RemoteVerifier",
    "ServiceConfigError",
    "ServiceUnavailableError",
    "VerifierClient",
    "VerifyRequest",
    "VerifyResponse",
    "VerifyResult",
]


class ServiceConfigError(RuntimeError):
    """The service refused us for a reason no retry fixes (wrong token, wrong URL)."""


class ServiceUnavailableError(RuntimeError):
    """``equivalent`` could not get an answer (the service stayed unreachable, or refused the pairs)."""


class VerifierClient:
    """Sends items to a verifier service; see the module docstring for batching and retries."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 600.0,
        max_batch: int = 256,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_batch < 1 or retries < 0 or concurrency < 1 or timeout_s <= 0:
            raise ValueError("max_batch and concurrency must be >= 1, retries >= 0, timeout_s > 0")
        self.url = url.rstrip("/")
        token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.max_batch = max_batch
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.concurrency = concurrency
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._timeout_s = timeout_s
        self._server_max_items: int | None = None
        self._limits_lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------------

    def verify(self, items: Sequence[dict[str, Any]]) -> list[VerifyResult]:
        """One result per item, in order. Items are dicts as on the wire (with ``domain``)."""
        items = list(items)
        if not items:
            return []
        size = min(self.max_batch, self._server_batch_cap())
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        if self.concurrency == 1 or len(batches) == 1:
            answered = [self._verify_batch(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="verify-client") as pool:
                answered = list(pool.map(self._verify_batch, batches))
        return [r for batch in answered for r in batch]

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each pair of extracted answers, whether the service's math verifier finds them equal.

        Batched like ``verify`` (``max_batch``, the server's ``max_items_per_request``, ``concurrency``)
        and retried on the same failures; raises :class:`ServiceUnavailableError` when it cannot answer.
        """
        pairs = [(str(a), str(b)) for a, b in pairs]
        if not pairs:
            return []
        size = min(self.max_batch, self._server_batch_cap())
        batches = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        if self.concurrency == 1 or len(batches) == 1:
            answered = [self._equivalent_batch(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="equivalent-client") as pool:
                answered = list(pool.map(self._equivalent_batch, batches))
        return [b for batch in answered for b in batch]

    def health(self) -> dict[str, Any]:
        response = self._http.get("/healthz")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "VerifierClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _server_batch_cap(self) -> int:
        """The server's ``max_items_per_request`` (asked once); ``max_batch`` if it can't be read."""
        with self._limits_lock:
            if self._server_max_items is None:
                try:
                    # A short timeout: an unreachable host must not cost the whole request timeout twice.
                    response = self._http.get("/v1/limits", timeout=min(LIMITS_TIMEOUT_S, self._timeout_s))
                    if response.status_code in (401, 403):
                        _raise_config_error(response)
                    response.raise_for_status()
                    self._server_max_items = int(response.json()["max_items_per_request"])
                except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                    logger.debug("could not read the service's limits (%s); using max_batch", exc)
                    return self.max_batch
            return self._server_max_items

    def _verify_batch(self, batch: list[dict[str, Any]]) -> list[VerifyResult]:
        """Results for one batch; never raises for transport trouble (those become ``error``)."""
        results: list[VerifyResult | None] = [None] * len(batch)
        pending = list(range(len(batch)))
        while pending:
            outcome = self._post_with_retries([batch[i] for i in pending])
            if isinstance(outcome, VerifyResponse):
                for i, result in zip(pending, outcome.results):
                    results[i] = result
                pending = []
            elif isinstance(outcome, _Split):
                # Too many items for the server: halve and go again, one half at a time.
                half = max(1, len(pending) // 2)
                if len(pending) == 1:
                    results[pending[0]] = _error_result(batch[pending[0]], "invalid_item", outcome.message)
                    pending = []
                else:
                    for part in (pending[:half], pending[half:]):
                        for i, r in zip(part, self._verify_batch([batch[j] for j in part])):
                            results[i] = r
                    pending = []
            elif isinstance(outcome, _BadItems):
                bad = {pending[e.index]: e.message for e in outcome.errors if 0 <= e.index < len(pending)}
                if not bad:  # a request-level 4xx: nothing to keep apart, so the whole batch is an error
                    for i in pending:
                        results[i] = _error_result(batch[i], "invalid_item", outcome.message)
                    pending = []
                else:
                    for i, message in bad.items():
                        logger.warning("item %r rejected by the verifier service: %s", batch[i].get("id"), message)
                        results[i] = _error_result(batch[i], "invalid_item", message)
                    pending = [i for i in pending if i not in bad]
            else:  # _GaveUp: transport failure after every retry
                for i in pending:
                    results[i] = _error_result(batch[i], "service_unavailable", outcome.message)
                pending = []
        return results  # type: ignore[return-value]

    def _equivalent_batch(self, pairs: list[tuple[str, str]]) -> list[bool]:
        outcome = self._post_with_retries([list(p) for p in pairs], path="/v1/equivalent")
        if isinstance(outcome, EquivalentResponse):
            return list(outcome.equivalent)
        if isinstance(outcome, _Split) and len(pairs) > 1:
            half = len(pairs) // 2
            return self._equivalent_batch(pairs[:half]) + self._equivalent_batch(pairs[half:])
        raise ServiceUnavailableError(f"verifier service at {self.url} could not compare {len(pairs)} answer pairs: "
                                      f"{outcome.message}")

    def _post_with_retries(
        self, items: list[Any], path: str = "/v1/verify"
    ) -> "VerifyResponse | EquivalentResponse | _Split | _BadItems | _GaveUp":
        body = {"items": items} if path == "/v1/verify" else {"pairs": items}
        last = ""
        for attempt in range(self.retries + 1):
            retry_after: float | None = None
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    parsed = _parse_success(response, len(items), EquivalentResponse if path != "/v1/verify" else VerifyResponse)
                    if parsed is not None:
                        return parsed
                    last = "malformed 200 response"
                elif status in (401, 403, 404):
                    _raise_config_error(response)
                elif status in _RETRY_STATUSES:
                    last = f"HTTP {status}: {_error_body(response).message}"
                    retry_after = _retry_after(response)
                elif status == 413:
                    error = _error_body(response)
                    if error.limit == "max_items_per_request" and len(items) > 1:
                        return _Split(error.message)
                    return _BadItems(error.message, [])
                elif 400 <= status < 500:
                    error = _error_body(response)
                    return _BadItems(error.message, error.errors)
                else:
                    last = f"HTTP {status}: {_error_body(response).message}"
            if attempt == self.retries:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            logger.info("verifier service: %s; retry %d/%d in %.1f s", last, attempt + 1, self.retries, delay)
            time.sleep(delay)
        logger.error("verifier service at %s failed %d times on %s (%s); %d items unanswered",
                     self.url, self.retries + 1, path, last, len(items))
        return _GaveUp(f"verifier service unreachable after {self.retries + 1} attempts: {last}")

    def _backoff(self, attempt: int) -> float:
        # Full jitter: replicas' clients that failed together must not retry in lockstep.
        cap = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return random.uniform(cap / 2, cap)


class _Split:
    def __init__(self, message: str) -> None:
        self.message = message


class _BadItems:
    def __init__(self, message: str, errors: list[Any]) -> None:
        self.message = message
        self.errors = errors


class _GaveUp:
    def __init__(self, message: str) -> None:
        self.message = message


def _parse_success(response: httpx.Response, expected: int, model: type = VerifyResponse) -> Any:
    try:
        parsed = model.model_validate_json(response.content)
    except ValidationError as exc:
        logger.warning("verifier service sent a 200 that does not parse: %s", exc)
        return None
    answers = parsed.results if isinstance(parsed, VerifyResponse) else parsed.equivalent
    if len(answers) != expected:
        logger.warning("verifier service sent %d answers for %d items", len(answers), expected)
        return None
    return parsed


def _error_body(response: httpx.Response) -> ErrorResponse:
    try:
        return ErrorResponse.model_validate_json(response.content)
    except ValidationError:
        text = response.text[:300] if response.content else response.reason_phrase
        return ErrorResponse(error=f"http_{response.status_code}", message=text)


def _raise_config_error(response: httpx.Response) -> None:
    raise ServiceConfigError(
        f"verifier service at {response.request.url} answered {response.status_code}: {_error_body(response).message}"
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the exponential backoff is good enough


def _error_result(item: dict[str, Any], reason: str, message: str) -> VerifyResult:
    item_id = item.get("id")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        item_id = str(item_id)
    domain = item.get("domain") if item.get("domain") in KNOWN_DOMAINS else "math"
    return VerifyResult.from_verdict(item_id, domain, Verdict.errored(reason, message))


def _local_parser(domain: str) -> Callable[[dict[str, Any], str], Any] | None:
    """The local verifier's ``parse_item`` when its module imports and building it starts nothing.

    ``MathVerifier()`` and ``CodeVerifier()`` start their worker pool / sandbox lazily, on the first
    ``verify_batch``, so building one here costs nothing.
    """
    try:
        if domain == "math":
            from verifiers.math import MathVerifier

            return MathVerifier().parse_item
        if domain == "code":
            from verifiers.code import CodeVerifier

            return CodeVerifier().parse_item
    except ImportError:
        logger.debug("no local %s verifier to validate items with; basic checks only", domain)
    return None


class RemoteVerifier:
    """The registry's ``Verifier`` protocol, answered by a verifier service.

    ``parse_item`` validates locally with the wire model of the domain (the same checks the server
    makes before it asks its verifier), so a malformed row is reported with its ``where`` before
    anything is sent. Items are the wire dicts; ``verify_batch`` returns ``Verdict`` objects.
    """

    def __init__(self, url: str, domain: str, token: str | None = None, **client_options: Any) -> None:
        if domain not in KNOWN_DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(KNOWN_DOMAINS)}")
        self.domain = domain
        self.client = VerifierClient(url, token=token, **client_options)
        self._local_parser = _local_parser(domain)

    def parse_item(self, row: dict[str, Any], where: str = "") -> dict[str, Any]:
        """The row as a wire item; a malformed row raises ``InputError`` naming ``where``."""
        prefix = f"{where}: " if where else ""
        if not isinstance(row, dict):
            raise InputError(f"{prefix}expected a JSON object, got {type(row).__name__}")
        if "domain" in row and row["domain"] != self.domain:
            raise InputError(f"{prefix}domain {row['domain']!r} sent to a {self.domain} verifier")
        model = {"math": MathItem, "code": CodeItem, "custom": CustomItem}[self.domain]
        try:
            item = model.model_validate({**row, "domain": self.domain})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"{prefix}{problems}") from None
        row = item.to_row()
        if self._local_parser is not None:
            self._local_parser(row, where)  # the domain's own checks (reference formats, test styles)
        return {**row, "domain": self.domain}

    def verify_batch(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        return [result.to_verdict() for result in self.client.verify(items)]

    def equivalent_batch(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """The service's ``MathVerifier.equivalent_batch`` (maj@k voting); math only.

        Raises :class:`ServiceUnavailableError` when the service cannot answer (a boolean has no
        ``error`` value, and a made-up ``False`` would change maj@k).
        """
        if self.domain != "math":
            raise ValueError(f"equivalent_batch compares math answers; this is a {self.domain} verifier")
        return self.client.equivalent(pairs)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "RemoteVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

