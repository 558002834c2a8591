"""The service's limits: body size, items per request, string lengths, and the admission queue.

Every limit has a name (the field name of :class:`Limits`); a request that goes over one is told
which, with its value, so a caller can fix the request rather than guess:

``max_body_bytes``        413 ``body_too_large``, checked on Content-Length and while streaming
``max_items_per_request`` 413 ``too_many_items``
``max_text_chars``        422 ``item_too_large``: a math ``response``/``reference`` or a code ``response``
``max_tests_chars``       422 ``item_too_large``: a code item's ``tests`` as JSON
``max_queue_items``       503 ``queue_full`` with ``Retry-After``: admitted but unanswered items

Memory stays bounded: at most ``max_queue_items`` items are held, each under the string caps, and
uvicorn's ``limit_concurrency`` caps how many bodies are being read at once.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, fields
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from verifiers.service.models import CodeItem, ErrorResponse, ItemError, MathItem


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 * 1024 * 1024
    max_items_per_request: int = 4096
    max_text_chars: int = 200_000
    max_tests_chars: int = 1_000_000
    max_queue_items: int = 16_384
    # Items handed to one verify_batch call; requests are cut into chunks of this size so that one
    # large request takes turns with the others instead of holding every slot until it is done.
    chunk_items: int = 32
    # Concurrent verify_batch calls per domain (each one occupies an executor thread).
    slots_per_domain: int = 2
    # Bounds for the Retry-After estimate sent with a 503.
    min_retry_after_s: int = 1
    max_retry_after_s: int = 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {f.name} must be a positive integer, got {value!r}")
        if self.max_items_per_request > self.max_queue_items:
            raise ValueError(
                f"max_items_per_request ({self.max_items_per_request}) must not exceed "
                f"max_queue_items ({self.max_queue_items}): such a request could never be admitted"
            )
        if self.min_retry_after_s > self.max_retry_after_s:
            raise ValueError("min_retry_after_s must not exceed max_retry_after_s")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def item_size_errors(index: int, item: MathItem | CodeItem, limits: Limits) -> list[ItemError]:
    """The string-length limits this item breaks (empty when it is within them)."""
    errors: list[ItemError] = []
    texts: list[tuple[str, str]] = [("response", item.response)]
    if isinstance(item, MathItem):
        texts.append(("reference", item.reference))
    for name, text in texts:
        if len(text) > limits.max_text_chars:
            errors.append(ItemError(
                index=index, id=item.id, field=name,
                message=f"{name} has {len(text)} characters, over the limit max_text_chars={limits.max_text_chars}",
            ))
    if isinstance(item, CodeItem):
        size = len(json.dumps(item.tests, ensure_ascii=False))
        if size > limits.max_tests_chars:
            errors.append(ItemError(
                index=index, id=item.id, field="tests",
                message=f"tests take {size} characters as JSON, over the limit max_tests_chars={limits.max_tests_chars}",
            ))
    return errors


class Admission:
    """Counts items admitted and not yet answered; refuses a request that would overflow the queue.

    Thread-safe (the counters are read by /healthz and /metrics while requests come and go). The
    Retry-After estimate is the time the current backlog takes to drain at the recently measured
    rate, clamped to the limits' bounds.
    """

    # Weight of the newest throughput sample in the moving average.
    _EWMA_WEIGHT = 0.2

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._depth = 0
        self._items_per_s: float | None = None

    @property
    def depth(self) -> int:
        return self._depth

    def try_admit(self, n: int) -> bool:
        with self._lock:
            if self._depth + n > self.limits.max_queue_items:
                return False
            self._depth += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._depth -= n

    def record_throughput(self, items: int, seconds: float) -> None:
        if seconds <= 0 or items <= 0:
            return
        rate = items * self.limits.slots_per_domain / seconds  # slots run in parallel
        with self._lock:
            if self._items_per_s is None:
                self._items_per_s = rate
            else:
                self._items_per_s += self._EWMA_WEIGHT * (rate - self._items_per_s)

    def retry_after_s(self) -> int:
        lo, hi = self.limits.min_retry_after_s, self.limits.max_retry_after_s
        rate = self._items_per_s
        if not rate:
            return lo
        return max(lo, min(hi, math.ceil(self._depth / rate)))


class BodySizeLimitMiddleware:
    """Answers 413 to a request body over ``max_bytes``, before the body is parsed.

    A declared Content-Length over the cap is refused without reading; a body without one (chunked)
    is counted as it streams in and refused as soon as it passes the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Any = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.max_bytes:
            await self._reject(send, declared)
            return

        received = 0
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now; the app sees the client go away and its own answer is dropped.
                    rejected = True
                    await self._reject(send, received)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send: Send, size: int) -> None:
        if self.on_reject is not None:
            self.on_reject("body_too_large")
        body = ErrorResponse(
            error="body_too_large",
            message=f"request body has at least {size} bytes, over the limit max_body_bytes={self.max_bytes}",
            limit="max_body_bytes",
        ).model_dump_json().encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
