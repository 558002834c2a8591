"""A process pool whose per-item deadline is enforced by killing the worker.

    with WorkerPool(fn, workers=2, timeout_s=5.0, initializer=warm_up) as pool:
        results = pool.map(items)            # list[TaskResult], in the order of items

Why not ``concurrent.futures`` / ``multiprocessing.Pool``: neither can stop a task that runs too long
(a future can only be abandoned; its worker stays busy forever), and a worker killed by the OS
breaks a ``ProcessPoolExecutor`` for good. Here every worker is a plain process with its own pipe;
the parent knows which item each worker is on and since when, kills a worker that passes the
deadline (SIGKILL: nothing inside the worker, not even a C extension, can ignore it), and starts a
replacement. No signal alarm is used anywhere, so the pool also works when called from a thread.

Items are sent in chunks and answered in one message per chunk, so neither side pays a pipe round
trip per item; each item still has its own deadline. The worker publishes which item it is on and
since when in a small shared-memory array (the clock is the system-wide monotonic clock), and the
parent checks that against ``timeout_s``. When a worker is killed, the item it was on gets its
verdict (timeout, or a retry after a crash) and the rest of its chunk goes back to the queue.

``fn``, ``initializer`` and the items must be picklable (module-level functions, plain data): workers
are started by the ``forkserver`` method by default, which is safe in a multi-threaded parent (the
HTTP service) where ``fork`` is not, and which keeps replacements cheap: the server process has
already imported the ``preload`` modules, so a new worker is a fork of a warm interpreter.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Sequence

logger = logging.getLogger(__name__)


class TaskStatus(str, Enum):
    OK = "ok"  # fn returned; the value is in TaskResult.value
    TIMEOUT = "timeout"  # the item ran past timeout_s; its worker was killed
    CRASHED = "crashed"  # the worker died on this item (every retry included)
    EXCEPTION = "exception"  # fn raised; the message says what

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TaskResult:
    status: TaskStatus
    value: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.OK


# Slots of a worker's shared state array: the item it is on (-1: none) and when it started it.
_CURRENT, _SINCE = 0, 1
_IDLE = -1.0


def _worker_main(
    conn: multiprocessing.connection.Connection,
    state: Any,
    fn: Callable[[Any], Any],
    initializer: Callable[[], None] | None,
    memory_mb: int | None,
) -> None:
    """Worker loop: receive a chunk of (index, item), answer with a list of (index, status, value)."""
    if memory_mb:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if initializer is not None:
        initializer()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return  # the parent is gone
        if chunk is None:
            return
        answers = []
        for index, item in chunk:
            # The start time is written before the index, so the parent never pairs this item
            # with the previous item's start time.
            state[_SINCE] = time.monotonic()
            state[_CURRENT] = index
            try:
                answers.append((index, TaskStatus.OK, fn(item)))
            except Exception as exc:  # fn's failure is a result for this item, not the worker's end
                answers.append((index, TaskStatus.EXCEPTION, f"{type(exc).__name__}: {exc}"[:2000]))
        state[_CURRENT] = _IDLE
        try:
            conn.send(answers)
        except Exception as exc:  # an unpicklable value: say so for each item instead of dying
            message = f"result could not be sent: {type(exc).__name__}: {exc}"[:2000]
            conn.send([(index, TaskStatus.EXCEPTION, message) for index, _, _ in answers])


@dataclass(eq=False)  # identity, not field equality: the pool finds a worker by `is`
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    state: Any  # shared array: [current item index or -1, monotonic start time of that item]
    ready: bool = False
    started_at: float = 0.0
    # Indices of the chunk sent and not yet answered, in the order the worker runs them.
    pending: collections.deque[int] | None = None
    sent_at: float = 0.0

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def running(self) -> tuple[int, float] | None:
        """(index, started at) of the item the worker is on, or None if it is between items."""
        # Read the index before the time (the worker writes them the other way round): a race can
        # then only pair an item with a *later* start, which delays a kill by one check, never
        # brings it forward.
        current = int(self.state[_CURRENT])
        since = self.state[_SINCE]
        if current < 0 or current not in self.pending:
            return None
        return current, max(since, self.sent_at)


class WorkerPool:
    """A pool of ``workers`` processes running ``fn`` on items, each within ``timeout_s`` of wall time.

    ``initializer`` runs once per worker before it takes work (import heavy modules there, not per
    item); ``preload`` names modules the forkserver imports once for all workers. ``memory_mb`` caps
    each worker's address space. A worker that dies on an item is replaced and the item retried up to
    ``crash_retries`` times; a worker killed for a timeout is replaced and the item is not retried.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        workers: int | None = None,
        timeout_s: float = 5.0,
        initializer: Callable[[], None] | None = None,
        chunk_size: int = 8,
        memory_mb: int | None = None,
        crash_retries: int = 1,
        start_method: str = "forkserver",
        preload: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.fn = fn
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.timeout_s = float(timeout_s)
        self.initializer = initializer
        self.chunk_size = chunk_size
        self.memory_mb = memory_mb
        self.crash_retries = crash_retries
        self.startup_timeout_s = startup_timeout_s
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver" and preload:
            # Only effective before this process's forkserver starts; otherwise the initializer
            # still imports what it needs, just once per worker instead of once for all.
            self._ctx.set_forkserver_preload(list(preload))
        self._lock = threading.Lock()  # map() is not reentrant; the service may call it from threads
        self._pool: list[_Worker] = []
        self._closed = False
        self.replaced = 0  # workers started to replace killed or dead ones (for logs and tests)
        for _ in range(self.workers):
            self._pool.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        state = self._ctx.RawArray("d", [_IDLE, 0.0])
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, state, self.fn, self.initializer, self.memory_mb),
            daemon=True,
            name="rest-em-worker",
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn, state, started_at=time.monotonic(), pending=collections.deque())

    def _kill(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _replace(self, worker: _Worker) -> _Worker:
        self._kill(worker)
        self.replaced += 1
        new = self._spawn()
        self._pool[self._pool.index(worker)] = new
        return new

    @property
    def worker_pids(self) -> list[int | None]:
        return [w.process.pid for w in self._pool]

    def map(self, items: Sequence[Any], progress: Callable[[int], None] | None = None) -> list[TaskResult]:
        """Run ``fn`` on every item; results in the order of ``items``. ``progress(n)`` is called as
        n more items finish (e.g. a tqdm ``update``)."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        with self._lock:
            for worker in list(self._pool):
                if worker.busy:  # left over from a map that was interrupted: its answers are stale
                    self._replace(worker)
            return _MapRun(self, items, progress).run()

    def close(self) -> None:
        """Stop all workers (idle ones are asked to exit, then every one is killed if still alive)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._pool:
            try:
                if not worker.busy:
                    worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for worker in self._pool:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(worker)
        self._pool.clear()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class _MapRun:
    """The state of one ``WorkerPool.map`` call."""

    def __init__(self, pool: WorkerPool, items: Sequence[Any], progress: Callable[[int], None] | None):
        self.pool = pool
        self.items = items
        self.progress = progress
        self.results: list[TaskResult | None] = [None] * len(items)
        self.queue: collections.deque[int] = collections.deque(range(len(items)))
        self.crashes: dict[int, int] = collections.defaultdict(int)
        self.remaining = len(items)

    def run(self) -> list[TaskResult]:
        while self.remaining:
            self._dispatch()
            self._wait_and_collect()
        return [r for r in self.results if r is not None]

    def _finish(self, index: int, result: TaskResult) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.progress is not None:
                self.progress(1)

    def _dispatch(self) -> None:
        idle = [w for w in self.pool._pool if w.ready and not w.busy]
        for worker in idle:
            if not self.queue:
                return
            # Smaller chunks near the end keep both workers busy until the last item.
            size = max(1, min(self.pool.chunk_size, len(self.queue) // self.pool.workers))
            chunk = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
            try:
                worker.conn.send([(i, self.items[i]) for i in chunk])
            except (OSError, ValueError):
                self.queue.extendleft(reversed(chunk))
                self.pool._replace(worker)
                continue
            worker.pending.extend(chunk)
            worker.sent_at = time.monotonic()

    def _next_deadline(self, now: float) -> float:
        deadlines = []
        for w in self.pool._pool:
            if w.busy:
                running = w.running()
                # Between items (or before the first): check again soon; the next item's clock
                # starts in the worker, not here.
                deadlines.append(running[1] + self.pool.timeout_s if running else now + 0.05)
            elif not w.ready:
                deadlines.append(w.started_at + self.pool.startup_timeout_s)
        return max(0.0, min(deadlines) - now) if deadlines else 0.05

    def _wait_and_collect(self) -> None:
        pool = self.pool
        timeout = self._next_deadline(time.monotonic())
        by_conn = {w.conn: w for w in pool._pool}
        by_sentinel = {w.process.sentinel: w for w in pool._pool}
        ready = multiprocessing.connection.wait(list(by_conn) + list(by_sentinel), timeout=timeout)
        dead: set[int] = set()
        for obj in ready:
            worker = by_conn.get(obj)
            if worker is None:
                continue
            # Drain every answer already in the pipe before looking at the process sentinel: a
            # worker may answer and then die, and its answers must not be thrown away.
            try:
                while worker.conn.poll():
                    self._handle_message(worker, worker.conn.recv())
            except (EOFError, OSError):
                dead.add(id(worker))
        for obj in ready:
            worker = by_sentinel.get(obj)
            if worker is not None:
                dead.add(id(worker))
        now = time.monotonic()
        for worker in list(pool._pool):
            if id(worker) in dead:
                self._on_death(worker)
            elif worker.busy and self._overdue(worker, now):
                self._on_timeout(worker)
            elif not worker.ready and now - worker.started_at >= pool.startup_timeout_s:
                raise RuntimeError(f"a worker did not start within {pool.startup_timeout_s:.0f} s")

    def _overdue(self, worker: _Worker, now: float) -> bool:
        running = worker.running()
        return running is not None and now - running[1] >= self.pool.timeout_s

    def _handle_message(self, worker: _Worker, message: Any) -> None:
        if isinstance(message, tuple) and message[0] == "ready":
            worker.ready = True
            return
        for index, status, value in message:
            if index in worker.pending:
                worker.pending.remove(index)
            if status is TaskStatus.OK:
                self._finish(index, TaskResult(TaskStatus.OK, value))
            else:
                self._finish(index, TaskResult(TaskStatus(status), None, str(value)))

    def _requeue_all_but(self, worker: _Worker, index: int | None) -> None:
        """Put the worker's unanswered items, except ``index``, back at the front of the queue.

        Items it finished before ``index`` are answered only with the whole chunk, so they are lost
        with the worker and run again: the price of one message per chunk, paid only on a kill.
        """
        rest = [i for i in worker.pending if i != index]
        self.queue.extendleft(reversed(rest))
        worker.pending.clear()

    def _on_timeout(self, worker: _Worker) -> None:
        running = worker.running()
        assert running is not None
        index = running[0]
        logger.debug("item %d passed %.1f s; killing worker %s", index, self.pool.timeout_s, worker.process.pid)
        self.pool._kill(worker)  # stop it first, so it cannot move on to the next item meanwhile
        self._requeue_all_but(worker, index)
        self._finish(index, TaskResult(TaskStatus.TIMEOUT, None, f"no result within {self.pool.timeout_s:g} s"))
        self.pool._replace(worker)

    def _on_death(self, worker: _Worker) -> None:
        code = worker.process.exitcode if not worker.process.is_alive() else None
        if not worker.ready:
            # The initializer failed: a bug or a broken install on our side, which replacing the
            # worker would only repeat forever.
            raise RuntimeError(f"a worker died while starting (exit code {code}); see its stderr")
        running = worker.running() if worker.busy else None
        if running is not None:
            index = running[0]
            self._requeue_all_but(worker, index)
            self.crashes[index] += 1
            if self.crashes[index] > self.pool.crash_retries:
                self._finish(index, TaskResult(TaskStatus.CRASHED, None, f"worker died (exit code {code})"))
            else:
                self.queue.appendleft(index)
            logger.warning("worker %s died (exit code %s) on item %d; replacing it", worker.process.pid, code, index)
        elif worker.busy:
            # Died between items (e.g. killed from outside while sending): nothing to blame.
            self._requeue_all_but(worker, None)
            logger.warning("worker %s died (exit code %s) between items; replacing it", worker.process.pid, code)
        else:
            logger.warning("worker %s died (exit code %s) while idle; replacing it", worker.process.pid, code)
        self.pool._replace(worker)


def run_inline(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[TaskResult]:
    """``fn`` over ``items`` in this process, with no deadline: a baseline for benchmarks."""
    results = []
    for item in items:
        try:
            results.append(TaskResult(TaskStatus.OK, fn(item)))
        except Exception as exc:
            results.append(TaskResult(TaskStatus.EXCEPTION, None, f"{type(exc).__name__}: {exc}"))
    return results
