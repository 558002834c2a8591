"""The killable-timeout process pool: order, deadlines, dead workers, exceptions."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from verifiers.workers import TaskStatus, WorkerPool, run_inline

# A broken pool hangs rather than failing: pytest-timeout turns that into a failure.
pytestmark = pytest.mark.timeout(60)

# The functions a pool runs must be importable by the workers: module level, picklable.


def square(x: int) -> int:
    return x * x


def sleep_then_echo(item: tuple[float, str]) -> str:
    seconds, tag = item
    time.sleep(seconds)
    return tag


def raise_on_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def die_on_marker(item: tuple[str, int]) -> int:
    """Kill this worker the first time the marker file is missing (then create it), else echo."""
    marker, value = item
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def always_die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def record_pid_then_sleep(item: tuple[str, float]) -> int:
    path, seconds = item
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def allocate_mb(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_results_keep_the_order_of_items(chunk_size):
    with WorkerPool(square, workers=2, timeout_s=5, chunk_size=chunk_size) as pool:
        results = pool.map(list(range(100)))
    assert [r.status for r in results] == [TaskStatus.OK] * 100
    assert [r.value for r in results] == [i * i for i in range(100)]


def test_progress_counts_every_item():
    done = []
    with WorkerPool(square, workers=2, timeout_s=5) as pool:
        pool.map(list(range(30)), progress=done.append)
    assert sum(done) == 30


def test_a_slow_item_times_out_and_the_rest_complete():
    items = [(0.0, "a"), (30.0, "slow"), (0.0, "b"), (0.0, "c")]
    with WorkerPool(sleep_then_echo, workers=2, timeout_s=1.0, chunk_size=4) as pool:
        start = time.monotonic()
        results = pool.map(items)
        elapsed = time.monotonic() - start
        assert [r.status for r in results] == [TaskStatus.OK, TaskStatus.TIMEOUT, TaskStatus.OK, TaskStatus.OK]
        assert [r.value for r in results] == ["a", None, "b", "c"]
        assert elapsed < 2 * pool.timeout_s
        assert pool.replaced == 1
        # The replacement works.
        assert pool.map([(0.0, "again")])[0].value == "again"


def test_an_exception_is_a_result_not_the_end_of_the_worker():
    with WorkerPool(raise_on_negative, workers=1, timeout_s=5) as pool:
        pids = pool.worker_pids
        results = pool.map([1, -2, 3])
        assert [r.status for r in results] == [TaskStatus.OK, TaskStatus.EXCEPTION, TaskStatus.OK]
        assert "ValueError: negative: -2" in results[1].message
        assert pool.worker_pids == pids


def test_a_worker_that_dies_is_replaced_and_the_item_retried(tmp_path):
    marker = str(tmp_path / "died-once")
    items = [("", 1), (marker, 2), ("", 3)]
    with WorkerPool(die_on_marker, workers=1, timeout_s=5, crash_retries=1) as pool:
        first_pids = pool.worker_pids
        results = pool.map(items)
        assert [r.value for r in results] == [1, 2, 3]
        assert pool.replaced == 1
        assert pool.worker_pids != first_pids


def test_an_item_that_always_kills_its_worker_is_reported_crashed():
    with WorkerPool(always_die, workers=2, timeout_s=5, crash_retries=1) as pool:
        results = pool.map([None])
        assert results[0].status is TaskStatus.CRASHED
        assert pool.replaced == 2  # the first try and one retry
    with WorkerPool(square, workers=1, timeout_s=5) as pool:
        assert pool.map([3])[0].value == 9


def test_a_worker_killed_from_outside_mid_item_is_replaced(tmp_path):
    pid_file = tmp_path / "pid"
    pool = WorkerPool(record_pid_then_sleep, workers=1, timeout_s=20, crash_retries=0)

    def kill_when_started() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        results = pool.map([(str(pid_file), 10.0)])
        killer.join()
        assert results[0].status is TaskStatus.CRASHED
        assert pool.replaced == 1
        pid_file.unlink()
        assert pool.map([(str(pid_file), 0.0)])[0].status is TaskStatus.OK
    finally:
        pool.close()


def test_the_pool_works_from_a_thread():
    # No signal alarm anywhere: signal handlers can only be set in the main thread.
    box = {}
    with WorkerPool(sleep_then_echo, workers=1, timeout_s=0.5) as pool:
        thread = threading.Thread(target=lambda: box.setdefault("r", pool.map([(5.0, "x"), (0.0, "y")])))
        thread.start()
        thread.join(timeout=20)
    assert [r.status for r in box["r"]] == [TaskStatus.TIMEOUT, TaskStatus.OK]


def test_memory_cap_turns_a_huge_allocation_into_an_exception():
    with WorkerPool(allocate_mb, workers=1, timeout_s=10, memory_mb=1024) as pool:
        small, huge = pool.map([10, 4096])
    assert small.value == 10 * 1024 * 1024
    assert huge.status is TaskStatus.EXCEPTION and "MemoryError" in huge.message


def test_closed_pool_refuses_work_and_bad_settings_are_rejected():
    pool = WorkerPool(square, workers=1, timeout_s=5)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.map([1])
    with pytest.raises(ValueError, match="timeout_s"):
        WorkerPool(square, timeout_s=0)


def test_run_inline_is_the_same_function_without_a_pool():
    results = run_inline(raise_on_negative, [1, -1])
    assert [r.status for r in results] == [TaskStatus.OK, TaskStatus.EXCEPTION]


def test_a_map_interrupted_by_the_caller_leaves_no_stale_answers():
    calls = []

    def interrupt(n: int) -> None:
        calls.append(n)
        raise KeyboardInterrupt

    with WorkerPool(sleep_then_echo, workers=1, timeout_s=10, chunk_size=4) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.map([(0.3, "old")] * 4, progress=interrupt)
        assert [r.value for r in pool.map([(0.0, "new")])] == ["new"]
        assert pool.replaced == 1
