"""The verifier HTTP service: a FastAPI app factory.

    from verifiers.service import ServiceSettings, create_app
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": {"workers": 2}}))
    # uvicorn.run(app, host="127.0.0.1", port=8000), or: rest-em serve-verifier --port 8000

Endpoints (docs/service.md has the full reference; OpenAPI at ``/docs``):

``POST /v1/verify``  ``{"items": [...]}`` -> ``{"results": [...]}`` in the same order
``POST /v1/equivalent``  ``{"pairs": [[a, b], ...]}`` -> ``{"equivalent": [bool, ...]}`` (maj@k voting)
``POST /get_reward``  OpenRLHF's ``--remote_rm_url`` protocol: ``{"query", "prompts", "labels"}`` -> ``{"rewards", "scores", "extra_logs"}``
``POST /run_code``   SandboxFusion's ``/run_code`` (veRL's sandbox_fusion reward, the sandbox-fusion client): Python 3 in the sandbox pool
``GET /v1/limits``   the limits in force, so a client can size its batches
``GET /healthz``     the domain verifiers (sandbox pool, math workers) and the queue
``GET /metrics``     Prometheus text

Domain verifiers are built once when the app starts (lifespan) and closed when it stops, after the
requests in flight have been answered.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from verifiers.io import InputError
from verifiers.registry import get_verifier
from verifiers.service import peers
from verifiers.service.dispatch import Dispatcher, DomainLane, Judged
from verifiers.service.errors import ServiceError, validation_error
from verifiers.service.health import lane_health
from verifiers.service.limits import Admission, BodySizeLimitMiddleware, Limits, item_size_errors
from verifiers.service.metrics import CONTENT_TYPE, RequestMetricsMiddleware, ServiceMetrics
from verifiers.service.models import (
    DOMAINS,
    KNOWN_DOMAINS,
    EquivalentRequest,
    EquivalentResponse,
    ErrorResponse,
    Health,
    ItemError,
    VerifyRequest,
    VerifyResponse,
    VerifyResult,
)
from verifiers.verdict import Verdict

logger = logging.getLogger(__name__)

TOKEN_ENV = "REST_EM_VERIFIER_TOKEN"

VerifierFactory = Callable[..., Any]


@dataclass(frozen=True)
class ServiceSettings:
    """What one replica serves and how.

    ``verifier_options`` maps a domain to the keyword options of its factory
    (``get_verifier(domain, **options)``), e.g. ``{"math": {"workers": 2, "timeout_s": 5.0}}``.
    ``token``: when set, ``/v1/*``, ``/get_reward``, ``/run_code`` and ``/metrics`` need
    ``Authorization: Bearer <token>``; the two peer endpoints also take ``?token=<token>`` in the URL,
    since OpenRLHF and veRL send no headers of their own.
    ``reward``: how ``/get_reward`` scores verdicts and the error share it refuses (503).
    """

    domains: tuple[str, ...] = DOMAINS
    verifier_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    reward: peers.RewardSettings = field(default_factory=peers.RewardSettings)
    # True: the verifiers are warm before the server listens. False: it listens at once and requests wait
    # (within their own timeout) until the verifiers are up, so a restarted replica is reachable within
    # the retries of a peer such as OpenRLHF (5 tries, 1 s apart) instead of refusing connections.
    warm_before_listening: bool = True

    def __post_init__(self) -> None:
        unknown = [d for d in self.domains if d not in KNOWN_DOMAINS]
        if unknown or not self.domains:
            raise ValueError(f"domains must be a non-empty subset of {', '.join(KNOWN_DOMAINS)}; got {list(self.domains)}")
        if "custom" in self.domains and not (self.verifier_options.get("custom") or {}).get("spec"):
            raise ValueError("domain custom needs its function, loaded at start: --custom MODULE:FUNCTION")
        extra = [d for d in self.verifier_options if d not in self.domains]
        if extra:
            raise ValueError(f"verifier_options for domains not served: {', '.join(extra)}")

    @classmethod
    def token_from_env(cls) -> str | None:
        return os.environ.get(TOKEN_ENV) or None


class ServiceState:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.admission = Admission(settings.limits)
        self.metrics = ServiceMetrics(lambda: self.admission.depth, settings.limits.max_queue_items)
        self.lanes: dict[str, DomainLane] = {}
        self.dispatcher: Dispatcher | None = None
        self.in_flight = 0
        self.ready = asyncio.Event()  # set once _start has built every lane

    def on_chunk(self, domain: str, verdicts: list[Verdict], elapsed_s: float) -> None:
        self.metrics.chunk_seconds.labels(domain=domain).observe(elapsed_s)
        self.metrics.observe_verdicts(domain, verdicts)
        self.admission.record_throughput(len(verdicts), elapsed_s)


def _start(state: ServiceState, factory: VerifierFactory) -> None:
    settings = state.settings
    for domain in settings.domains:
        options = settings.verifier_options.get(domain, {})
        try:
            verifier = factory(domain, **options)
            start = getattr(verifier, "start", None)
            if callable(start):  # warm the workers / containers before the first request
                start()
        except Exception as exc:  # the other domains still serve; this one answers `error`
            logger.exception("could not start the %s verifier; its items will get error verdicts", domain)
            state.lanes[domain] = DomainLane(domain, None, settings.limits.slots_per_domain,
                                             unavailable_reason=f"{type(exc).__name__}: {exc}")
            continue
        logger.info("%s verifier ready (%s)", domain, options or "default options")
        state.lanes[domain] = DomainLane(domain, verifier, settings.limits.slots_per_domain)
    state.dispatcher = Dispatcher(state.lanes, settings.limits.chunk_items, on_chunk=state.on_chunk)


def _stop(state: ServiceState) -> None:
    if state.dispatcher is not None:
        state.dispatcher.close(wait=True)
    for lane in state.lanes.values():
        if lane.verifier is None:
            continue
        try:
            lane.verifier.close()
        except Exception:
            logger.exception("closing the %s verifier failed", lane.domain)
    logger.info("verifier service stopped")


@contextmanager
def _admitted(state: Any, limits: Limits, count: int, noun: str) -> Iterator[None]:
    """Admit ``count`` queued units (items or pairs) or answer 503 queue_full; count the request in flight."""
    if not state.admission.try_admit(count):
        retry_after = state.admission.retry_after_s()
        state.metrics.rejections.labels(reason="queue_full").inc()
        raise ServiceError(503, ErrorResponse(
            error="queue_full",
            message=(f"{state.admission.depth} items are queued; {count} more {noun} would pass the limit "
                     f"max_queue_items={limits.max_queue_items}; retry in {retry_after} s"),
            limit="max_queue_items",
        ), {"Retry-After": str(retry_after)})
    state.in_flight += 1
    state.metrics.in_flight.inc()
    try:
        yield
    finally:
        state.admission.release(count)
        state.in_flight -= 1
        state.metrics.in_flight.dec()


def create_app(settings: ServiceSettings | None = None, verifier_factory: VerifierFactory = get_verifier) -> FastAPI:
    """The service app. ``verifier_factory(domain, **options)`` builds each domain's verifier."""
    settings = settings or ServiceSettings(token=ServiceSettings.token_from_env())
    state = ServiceState(settings)
    limits = settings.limits

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Verifiers start worker processes / containers: do it off the loop, once.
        starting = asyncio.create_task(asyncio.to_thread(_start, state, verifier_factory))
        starting.add_done_callback(lambda _: state.ready.set())
        if settings.warm_before_listening:
            await starting
        try:
            yield
        finally:
            try:
                await starting
            except Exception:
                logger.exception("starting the verifiers failed")
            await asyncio.to_thread(_stop, state)

    app = FastAPI(
        title="rest-em verifier service",
        version="1",
        summary="Binary verifiers for math answers and code (sandboxed unit tests): pass, fail or error.",
        lifespan=lifespan,
    )
    app.state.service = state

    bearer = HTTPBearer(auto_error=False, description=f"Needed when the service was started with {TOKEN_ENV} set.")

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            state.metrics.rejections.labels(reason="unauthorized").inc()
            raise ServiceError(
                401,
                ErrorResponse(error="unauthorized", message="missing or wrong bearer token (Authorization: Bearer ...)"),
                {"WWW-Authenticate": "Bearer"},
            )

    async def warmed_up() -> None:
        """Hold a request until the verifiers are up (only ever waits with warm_before_listening=False)."""
        if not state.ready.is_set():
            await state.ready.wait()

    async def require_peer_token(request: Request,
                                 credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """The bearer token, or ``?token=`` in the URL (a peer trainer is configured with a URL only)."""
        if settings.token is None:
            return
        if credentials is None and request.query_params.get("token") is not None:
            given = request.query_params["token"]
            if hmac.compare_digest(given.encode(), settings.token.encode()):
                return
        await require_token(credentials)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body.model_dump(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/run_code":
            # SandboxFusion's own answer to a body it cannot take (e.g. a language it does not run):
            # FastAPI's default 422, {"detail": [...]}.
            state.metrics.rejections.labels(reason="invalid_request").inc()
            return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
        error = validation_error(exc)
        state.metrics.rejections.labels(reason=error.body.error).inc()
        return JSONResponse(error.body.model_dump(), status_code=error.status)

    error_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in ((400, "Body is not JSON"), (401, "Missing or wrong token"),
                           (413, "Body or item count over a limit"), (422, "Invalid items, or a string over a limit"),
                           (503, "Queue full: retry after Retry-After seconds"))
    }

    @app.post("/v1/verify", response_model=VerifyResponse, responses=error_responses,
              dependencies=[Depends(require_token), Depends(warmed_up)])
    async def verify(body: VerifyRequest, request: Request) -> VerifyResponse:
        """Verify math and code items; one result per item, in request order."""
        started = time.perf_counter()
        items = body.items
        _check_limits(items, limits, state)
        with _admitted(state, limits, len(items), "items"):
            results = await _verify_admitted(items, state, request.is_disconnected)
        return VerifyResponse(results=results, elapsed_s=time.perf_counter() - started)

    @app.post("/v1/equivalent", response_model=EquivalentResponse, responses=error_responses,
              dependencies=[Depends(require_token), Depends(warmed_up)])
    async def equivalent(body: EquivalentRequest, request: Request) -> EquivalentResponse | Response:
        """Are two extracted answers the same answer? The math verifier's ``equivalent_batch``, one
        boolean per pair in request order (a check past the time limit is false)."""
        started = time.perf_counter()
        pairs = body.pairs
        _check_pair_limits(pairs, limits, state)
        lane = state.lanes.get("math")
        if lane is None or lane.verifier is None or not callable(getattr(lane.verifier, "equivalent_batch", None)):
            why = "this replica does not serve math" if lane is None else (lane.unavailable_reason or "no equivalent_batch")
            raise ServiceError(503, ErrorResponse(error="verifier_unavailable",
                                                  message=f"no math verifier to compare answers with: {why}"))
        with _admitted(state, limits, len(pairs), "pairs"):
            assert state.dispatcher is not None, "the app's lifespan has not run"
            answers = await state.dispatcher.equivalent(pairs, request.is_disconnected)
        if answers is None:  # the caller went away; nobody reads this
            return Response(status_code=499)
        return EquivalentResponse(equivalent=answers, elapsed_s=time.perf_counter() - started)

    @app.post("/get_reward", response_model=peers.RewardResponse, responses=error_responses,
              dependencies=[Depends(require_peer_token), Depends(warmed_up)])
    async def get_reward(body: peers.RewardRequest, request: Request) -> peers.RewardResponse:
        """OpenRLHF's remote reward (``--remote_rm_url``): one reward per query, in order. A batch with
        more `error` verdicts than ``reward_max_error_rate`` gets 503 (OpenRLHF retries it)."""
        started = time.perf_counter()
        if len(body.query) > limits.max_items_per_request:
            _check_limits(body.query, limits, state)  # the 413 too_many_items answer
        rows, errors = peers.reward_rows(body)
        if errors:
            state.metrics.rejections.labels(reason="invalid_items").inc()
            first = errors[0]
            raise ServiceError(422, ErrorResponse(
                error="invalid_items",
                message=f"{len(errors)} invalid quer(ies); first: query[{first.index}] {first.field}: {first.message}",
                errors=errors))
        items = _typed_items(rows, state)
        _check_limits(items, limits, state)
        with _admitted(state, limits, len(items), "items"):
            results = await _verify_admitted(items, state, request.is_disconnected)
        refusal = peers.error_rate_refusal(results, settings.reward)
        if refusal is not None:
            state.metrics.rejections.labels(reason="error_rate").inc()
            message, bad = refusal
            raise ServiceError(503, ErrorResponse(error="verifier_errors", message=message,
                                                  limit="reward_max_error_rate", errors=bad), {"Retry-After": "1"})
        return peers.reward_response(results, settings.reward, time.perf_counter() - started)

    @app.post("/run_code", response_model=peers.RunCodeResponse, responses=error_responses,
              dependencies=[Depends(require_peer_token), Depends(warmed_up)])
    async def run_code(body: peers.RunCodeRequest) -> peers.RunCodeResponse:
        """SandboxFusion's ``/run_code``: a Python 3 program (with ``stdin``) in the code verifier's hardened
        sandbox pool, under its limits. ``run_timeout`` -> ``TimeLimitExceeded``."""
        for name in ("code", "stdin"):
            text = getattr(body, name) or ""
            if len(text) > limits.max_text_chars:
                state.metrics.rejections.labels(reason="item_too_large").inc()
                raise ServiceError(422, ErrorResponse(
                    error="item_too_large", limit="max_text_chars",
                    message=f"{name} has {len(text)} characters, over the limit max_text_chars={limits.max_text_chars}"))
        unsupported = peers.unsupported_run_fields(body)
        lane = state.lanes.get("code")
        if unsupported is not None:
            answer = peers.RunCodeResponse(status=peers.RunStatus.SandboxError, message=unsupported)
        elif lane is None or lane.verifier is None or not callable(getattr(lane.verifier, "run_program", None)):
            why = "this replica does not serve code" if lane is None else (lane.unavailable_reason or "no run_program")
            answer = peers.RunCodeResponse(status=peers.RunStatus.SandboxError, message=f"sandbox_unavailable: {why}")
        else:
            with _admitted(state, limits, 1, "programs"):
                assert state.dispatcher is not None, "the app's lifespan has not run"
                result = await state.dispatcher.call("code", lane.verifier.run_program, body.code, body.stdin or "",
                                                     body.run_timeout, body.memory_limit_MB)
            answer = peers.run_code_response(result)
        run = answer.run_result
        state.metrics.run_code.labels(status=answer.status.value,
                                      run_status=run.status.value if run is not None else "none").inc()
        return answer

    @app.get("/v1/limits", response_model=dict[str, int], dependencies=[Depends(require_token)])
    async def get_limits() -> dict[str, int]:
        """The limits in force (names as in 413/422/503 error bodies)."""
        return {name: getattr(limits, name) for name in Limits.names()}

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """State of each domain verifier (sandbox pool, math workers) and of the queue."""
        if not state.ready.is_set():  # listening while the verifiers warm up
            return Health(status="degraded", domains={}, queue_depth=state.admission.depth,
                          queue_capacity=limits.max_queue_items, in_flight_requests=state.in_flight)
        domains = {name: await lane_health(lane) for name, lane in state.lanes.items()}
        status = "ok" if domains and all(d.status == "ok" for d in domains.values()) else "degraded"
        return Health(status=status, domains=domains, queue_depth=state.admission.depth,
                      queue_capacity=limits.max_queue_items, in_flight_requests=state.in_flight)

    @app.get("/metrics", dependencies=[Depends(require_token)], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    def _on_body_rejected(reason: str) -> None:
        state.metrics.rejections.labels(reason=reason).inc()

    # Outermost first: metrics see every answer, including the body-size 413.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=limits.max_body_bytes, on_reject=_on_body_rejected)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app


def _check_limits(items: list[Any], limits: Limits, state: ServiceState) -> None:
    if len(items) > limits.max_items_per_request:
        state.metrics.rejections.labels(reason="too_many_items").inc()
        raise ServiceError(413, ErrorResponse(
            error="too_many_items",
            message=f"{len(items)} items, over the limit max_items_per_request={limits.max_items_per_request}; split the batch",
            limit="max_items_per_request",
        ))
    errors = [e for i, item in enumerate(items) for e in item_size_errors(i, item, limits)]
    if errors:
        state.metrics.rejections.labels(reason="item_too_large").inc()
        limit = "max_tests_chars" if all(e.field == "tests" for e in errors) else "max_text_chars"
        first = errors[0]
        raise ServiceError(422, ErrorResponse(
            error="item_too_large",
            message=f"{len(errors)} item field(s) over a limit; first: items[{first.index}].{first.field}: {first.message}",
            limit=limit,
            errors=errors,
        ))


def _check_pair_limits(pairs: list[tuple[str, str]], limits: Limits, state: ServiceState) -> None:
    """``max_items_per_request`` counts pairs; ``max_text_chars`` applies to each answer."""
    if len(pairs) > limits.max_items_per_request:
        state.metrics.rejections.labels(reason="too_many_items").inc()
        raise ServiceError(413, ErrorResponse(
            error="too_many_items",
            message=f"{len(pairs)} pairs, over the limit max_items_per_request={limits.max_items_per_request}; split the batch",
            limit="max_items_per_request",
        ))
    errors = [
        ItemError(index=i, field=f"{side}", message=f"answer has {len(text)} characters, over the limit "
                  f"max_text_chars={limits.max_text_chars}")
        for i, pair in enumerate(pairs) for side, text in enumerate(pair) if len(text) > limits.max_text_chars
    ]
    if errors:
        state.metrics.rejections.labels(reason="item_too_large").inc()
        first = errors[0]
        raise ServiceError(422, ErrorResponse(
            error="item_too_large",
            message=f"{len(errors)} answer(s) over a limit; first: pairs[{first.index}][{first.field}]: {first.message}",
            limit="max_text_chars", errors=errors,
        ))


def _parse_items(items: list[Any], state: ServiceState) -> dict[str, list[tuple[int, Any]]]:
    """Items grouped by domain as ``(index, parsed item)``; bad items raise a 422 naming each one."""
    by_domain: dict[str, list[tuple[int, Any]]] = {}
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        lane = state.lanes.get(item.domain)
        if lane is None:
            errors.append(ItemError(index=index, id=item.id, field="domain",
                                    message=f"domain {item.domain!r} is not served here (serving: {', '.join(state.lanes)})"))
            continue
        row = item.to_row()
        if lane.verifier is None:
            parsed: Any = row  # answered with `error` verdicts; nothing to parse it with
        else:
            where = f"items[{index}]"
            try:
                parsed = lane.verifier.parse_item(row, where=where)
            except InputError as exc:
                message = str(exc).removeprefix(f"{where}: ")  # the index is in the ItemError already
                errors.append(ItemError(index=index, id=item.id, message=message))
                continue
        by_domain.setdefault(item.domain, []).append((index, parsed))
    if errors:
        state.metrics.rejections.labels(reason="invalid_items").inc()
        raise ServiceError(422, ErrorResponse(
            error="invalid_items",
            message=f"{len(errors)} invalid item(s); first: items[{errors[0].index}]: {errors[0].message}",
            errors=errors,
        ))
    return by_domain


def _typed_items(rows: list[dict[str, Any]], state: ServiceState) -> list[Any]:
    """``rows`` as the ``/v1/verify`` item models (the same validation and 422 answers)."""
    from pydantic import ValidationError

    try:
        return VerifyRequest.model_validate({"items": rows}).items
    except ValidationError as exc:
        error = validation_error(RequestValidationError(exc.errors(), body={"items": rows}))
        state.metrics.rejections.labels(reason=error.body.error).inc()
        raise error from None


async def _verify_admitted(items: list[Any], state: ServiceState,
                           client_gone: Callable[[], Awaitable[bool]]) -> list[VerifyResult]:
    by_domain = _parse_items(items, state)
    assert state.dispatcher is not None, "the app's lifespan has not run"
    domains = list(by_domain)
    judged_lists = await asyncio.gather(
        *(state.dispatcher.verify(d, [parsed for _, parsed in by_domain[d]], client_gone) for d in domains)
    )
    results: list[VerifyResult | None] = [None] * len(items)
    for domain, judged in zip(domains, judged_lists):
        for (index, _), j in zip(by_domain[domain], judged):
            results[index] = _result(items[index].id, domain, j)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # the dispatcher answers every item; this guards the invariant the client relies on
        raise RuntimeError(f"no verdict for items {missing[:10]}")
    return results  # type: ignore[return-value]


def _result(item_id: Any, domain: str, judged: Judged) -> VerifyResult:
    return VerifyResult.from_verdict(item_id, domain, judged.verdict, judged.queued_s, judged.elapsed_s)
