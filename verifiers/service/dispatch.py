"""Running verifier batches off the event loop, in chunks that take turns.

Verification is CPU-bound (math worker processes, code sandbox containers) and ``verify_batch``
blocks, so every call runs in a thread executor and the event loop stays free to accept requests,
answer ``/healthz`` and refuse overload with 503.

Fairness: a request's items are cut into chunks of ``chunk_items``. Each domain has
``slots_per_domain`` slots (an ``asyncio.Semaphore``, which wakes waiters first come, first served).
A request never queues more chunks than there are slots, and a chunk that finishes queues the next
one *behind* every chunk already waiting, so a request of 4,000 items and one of 4 take turns chunk
by chunk instead of the small one waiting for the whole large one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from verifiers.verdict import Verdict

logger = logging.getLogger(__name__)


@dataclass
class Judged:
    verdict: Verdict
    queued_s: float
    elapsed_s: float


@dataclass
class DomainLane:
    """One domain's verifier (or why it is missing) and its slots."""

    domain: str
    verifier: Any | None
    slots: int
    unavailable_reason: str = ""
    semaphore: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.slots)


ChunkObserver = Callable[[str, list[Verdict], float], None]
# Stands in for the verdicts of chunks skipped because the caller went away; nobody receives them.
GONE = Verdict.errored("client_disconnected", "the client disconnected before this item was verified")


class Dispatcher:
    def __init__(self, lanes: dict[str, DomainLane], chunk_items: int, on_chunk: ChunkObserver | None = None) -> None:
        self.lanes = lanes
        self.chunk_items = chunk_items
        self.on_chunk = on_chunk
        total_slots = sum(lane.slots for lane in lanes.values()) or 1
        self.executor = ThreadPoolExecutor(max_workers=total_slots, thread_name_prefix="verify")
        self._jobs: dict[str, ThreadPoolExecutor] = {}
        self._jobs_lock = threading.Lock()

    async def verify(self, domain: str, items: Sequence[Any],
                     client_gone: Callable[[], Awaitable[bool]] | None = None) -> list[Judged]:
        """Verdicts for ``items`` (already parsed by the domain's verifier), in order.

        ``client_gone`` is asked before each chunk: once the caller has disconnected, the chunks not
        yet started are skipped (their answer could never be delivered; a retry would repeat them).
        """
        lane = self.lanes[domain]
        if lane.verifier is None:
            verdict = Verdict.errored("verifier_unavailable", lane.unavailable_reason)
            return [Judged(verdict, 0.0, 0.0) for _ in items]

        chunks = [list(items[i : i + self.chunk_items]) for i in range(0, len(items), self.chunk_items)]
        results: list[list[Judged] | None] = [None] * len(chunks)
        next_chunk = 0

        async def worker() -> None:
            nonlocal next_chunk
            loop = asyncio.get_running_loop()
            while next_chunk < len(chunks):
                index = next_chunk
                next_chunk += 1
                waited_from = time.perf_counter()
                async with lane.semaphore:
                    if client_gone is not None and await client_gone():
                        results[index] = [Judged(GONE, 0.0, 0.0) for _ in chunks[index]]
                        continue
                    started = time.perf_counter()
                    verdicts = await loop.run_in_executor(self.executor, _run_chunk, lane, chunks[index])
                    elapsed = time.perf_counter() - started
                if self.on_chunk is not None:
                    self.on_chunk(domain, verdicts, elapsed)
                results[index] = [Judged(v, started - waited_from, elapsed) for v in verdicts]

        await asyncio.gather(*(worker() for _ in range(min(lane.slots, len(chunks)))))
        return [judged for chunk in results for judged in chunk or ()]

    async def equivalent(self, pairs: Sequence[tuple[str, str]],
                         client_gone: Callable[[], Awaitable[bool]] | None = None) -> list[bool] | None:
        """``equivalent_batch`` of the math verifier on ``pairs``, in order, chunk by chunk through the
        math lane's slots (taking turns with verify requests). None when the caller went away."""
        lane = self.lanes["math"]
        chunks = [list(pairs[i : i + self.chunk_items]) for i in range(0, len(pairs), self.chunk_items)]
        results: list[list[bool] | None] = [None] * len(chunks)
        next_chunk = 0
        gone = False

        async def worker() -> None:
            nonlocal next_chunk, gone
            loop = asyncio.get_running_loop()
            while next_chunk < len(chunks) and not gone:
                index = next_chunk
                next_chunk += 1
                async with lane.semaphore:
                    if client_gone is not None and await client_gone():
                        gone = True
                        return
                    answer = await loop.run_in_executor(self.executor, lane.verifier.equivalent_batch, chunks[index])
                answer = list(answer)
                if len(answer) != len(chunks[index]):
                    raise RuntimeError(f"equivalent_batch returned {len(answer)} answers for {len(chunks[index])} pairs")
                results[index] = [bool(a) for a in answer]

        await asyncio.gather(*(worker() for _ in range(min(lane.slots, len(chunks)))))
        if gone:
            return None
        return [b for chunk in results for b in chunk or ()]

    async def call(self, domain: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (one blocking job on the domain's verifier, e.g. ``/run_code``'s ``run_program``) in
        the domain's own job executor, sized to the verifier's ``health()["size"]`` (its sandbox pool), so
        single jobs fill the pool instead of queueing behind the verify slots."""
        executor = self._job_executor(domain)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def _job_executor(self, domain: str) -> ThreadPoolExecutor:
        with self._jobs_lock:
            executor = self._jobs.get(domain)
            if executor is None:
                lane = self.lanes[domain]
                size = 0
                try:
                    size = int((lane.verifier.health() or {}).get("size") or 0)
                except Exception:  # a health() that fails must not stop the job; fall back to the slots
                    logger.exception("%s verifier health() failed while sizing its job executor", domain)
                executor = ThreadPoolExecutor(max_workers=max(size, lane.slots), thread_name_prefix=f"{domain}-job")
                self._jobs[domain] = executor
            return executor

    def close(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=not wait)
        with self._jobs_lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for executor in jobs:
            executor.shutdown(wait=wait, cancel_futures=not wait)


def _run_chunk(lane: DomainLane, chunk: list[Any]) -> list[Verdict]:
    """``verify_batch`` on one chunk; a verifier that raises or miscounts gives ``error`` verdicts."""
    try:
        verdicts = list(lane.verifier.verify_batch(chunk))
    except Exception as exc:  # a verifier bug must not take the request (or the service) down
        logger.exception("%s verifier raised on a chunk of %d items", lane.domain, len(chunk))
        return [Verdict.errored("verifier_crashed", f"{type(exc).__name__}: {exc}") for _ in chunk]
    if len(verdicts) != len(chunk) or not all(isinstance(v, Verdict) for v in verdicts):
        logger.error("%s verifier returned %d verdicts for %d items", lane.domain, len(verdicts), len(chunk))
        return [Verdict.errored("verifier_bug", f"verify_batch returned {len(verdicts)} results for {len(chunk)} items")
                for _ in chunk]
    return verdicts
