"""Throughput of the math verifier's worker pool against calling Math-Verify directly.

    .venv/bin/python benchmarks/bench_math_verify.py            # or: make bench
    .venv/bin/python benchmarks/bench_math_verify.py --limit 1000 --workers 2

Verifies every MATH test solution against its own reference twice in the same run:

- ``pool``:   ``MathVerifier.verify_batch`` (worker processes, per-item kill deadline), workers warm;
- ``direct``: the same function the workers run (extraction, normalisation, Math-Verify parse +
  verify), called in this one process with no pool and no deadline: the baseline.

The two take turns on slices of the data (``--rounds``), so load from other users of the machine
falls on both. The load average is printed with the result.

It prints verdicts per second for each and the ratio pool / direct (the target is >= 1.5 on 2 cores).
The machine is shared and noisy, so only the ratio within one run means anything. The two runs must
also agree verdict for verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verifiers.math import MathItem, MathVerifier  # noqa: E402
from verifiers.math.equivalence import CheckTask, run_task, warm_up  # noqa: E402
from verifiers.workers import run_inline  # noqa: E402


def _data_dir() -> Path:
    env = os.environ.get("REST_EM_SHARED_DATA")
    return Path(env) if env else ROOT / ".." / "shared" / "data"


def _cpu_s(pids: list[int | None]) -> float | None:
    """User + system CPU seconds of these processes so far (Linux /proc), or None elsewhere."""
    try:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N MATH test problems")
    parser.add_argument("--workers", type=int, default=None, help="pool workers (default: one per core)")
    parser.add_argument("--chunk-size", type=int, default=None, help="items per round trip to a worker")
    parser.add_argument("--rounds", type=int, default=10, help="alternate pool and direct over this many slices")
    parser.add_argument("--no-string-shortcut", action="store_true",
                        help="send every answer through Math-Verify even when the strings are identical")
    args = parser.parse_args()

    path = _data_dir() / "math" / "test.jsonl"
    if not path.exists():
        print(f"MATH test data not found at {path} (set REST_EM_SHARED_DATA)", file=sys.stderr)
        return 2
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()][: args.limit]
    items = [MathItem(r["unique_id"], r["solution"], r["solution"], "math_solution") for r in rows]

    verifier = MathVerifier.from_options(
        workers=args.workers, chunk_size=args.chunk_size, string_shortcut=False if args.no_string_shortcut else None
    )
    config = verifier.config
    tasks = [
        CheckTask(i.reference, i.response, i.reference_format, config.extraction_policies, config.string_shortcut)
        for i in items
    ]

    # Pool and direct take turns on the same slices, so a neighbour's burst of CPU use on this
    # shared machine lands on both sides instead of skewing the ratio.
    rounds = max(1, min(args.rounds, len(items)))
    bounds = [len(items) * k // rounds for k in range(rounds + 1)]
    pool_verdicts: list = []
    direct_verdicts: list = []
    pool_s = direct_s = 0.0
    load_before = os.getloadavg()[0]
    warm_up()  # the direct side pays its imports outside the clock, like the warm pool
    with verifier:
        start = time.perf_counter()
        verifier.verify_batch(items[: 2 * verifier.pool.workers])  # every worker started and warm
        startup_s = time.perf_counter() - start
        workers = verifier.pool.workers
        pids = verifier.pool.worker_pids
        pool_cpu_start = _cpu_s(pids)
        direct_cpu = 0.0
        for lo, hi in zip(bounds, bounds[1:]):
            start = time.perf_counter()
            pool_verdicts += verifier.verify_batch(items[lo:hi])
            pool_s += time.perf_counter() - start
            start, cpu_start = time.perf_counter(), time.process_time()
            direct_verdicts += [r.value for r in run_inline(run_task, tasks[lo:hi])]
            direct_s += time.perf_counter() - start
            direct_cpu += time.process_time() - cpu_start
        pool_cpu_end = _cpu_s(pids) if verifier.pool.worker_pids == pids else None  # None: a worker was replaced
    load_after = os.getloadavg()[0]

    disagree = [i.id for i, a, b in zip(items, pool_verdicts, direct_verdicts) if a.outcome != b.outcome]
    passed = sum(v.is_pass for v in pool_verdicts)
    pool_rate = len(items) / pool_s
    direct_rate = len(items) / direct_s
    print(f"items: {len(items)} MATH test solutions vs their own references; cores: {os.cpu_count()}; "
          f"rounds: {rounds}; load average before/after: {load_before:.2f}/{load_after:.2f}")
    print(f"pass: {passed}/{len(items)} ({100 * passed / len(items):.2f}%)")
    print(f"pool start-up (workers={workers}, until warm): {startup_s:.2f} s")
    print(f"pool:   {pool_rate:8.1f} verdicts/s  ({pool_s:.2f} s)")
    print(f"direct: {direct_rate:8.1f} verdicts/s  ({direct_s:.2f} s, one process)")
    print(f"ratio pool/direct: {pool_rate / direct_rate:.2f}x")
    if pool_cpu_start is not None and pool_cpu_end is not None:
        # CPU per verdict says whether the pool adds work; the wall ratio above also depends on
        # how much of the two cores other users of the machine left to this run.
        pool_cpu = pool_cpu_end - pool_cpu_start
        print(f"CPU per verdict: pool workers {1000 * pool_cpu / len(items):.2f} ms, "
              f"direct {1000 * direct_cpu / len(items):.2f} ms; "
              f"pool cores in use: {pool_cpu / pool_s:.2f}, direct: {direct_cpu / direct_s:.2f}")
    if disagree:
        print(f"pool and direct disagree on {len(disagree)} items, e.g. {disagree[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
