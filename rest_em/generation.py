"""Sampling rows from a policy, shared by the E-step and the evaluation.

    rows, stats = generate_rows(sampler, problem_set, params, iteration, desc="E-step 1")

Rows come in problem order, then sample order: ``{problem_id, sample_idx, iteration, [mode],
text, finish_reason, num_tokens}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from rest_em.problem_sets import ProblemSet


def generate_rows(
    sampler: Any, problem_set: ProblemSet, params: Any, iteration: int, desc: str,
    extra: Mapping[str, Any] | None = None, shard_dir: Path | None = None, seeding: str = "batch",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample ``params.n`` completions per problem of ``problem_set``; the rows and the stage's stats.

    A sharded sampler (``sampler.sharded``: the Ray backend) gets the problem ids and writes its shards
    under ``shard_dir``; it always seeds per problem. ``seeding="problem"`` does the same on one engine."""
    problems = problem_set.problems
    start = time.monotonic()
    prompts, keys = [problem_set.prompts[p.problem_id] for p in problems], [p.problem_id for p in problems]
    if getattr(sampler, "sharded", False):
        outs = sampler.generate(prompts, params, desc=desc, keys=keys, shard_dir=shard_dir)
    elif seeding == "problem":
        from rest_em.sampling.seeding import generate_per_problem

        outs = generate_per_problem(sampler, prompts, keys, params, desc=desc)
    else:
        outs = sampler.generate(prompts, params, desc=desc)
    seconds = time.monotonic() - start
    rows = []
    for p, completions in zip(problems, outs, strict=True):
        for idx, c in enumerate(completions):
            rows.append({"problem_id": p.problem_id, "sample_idx": idx, "iteration": iteration, **(extra or {}),
                         "text": c.text, "finish_reason": c.finish_reason, "num_tokens": c.num_tokens})
    tokens = sum(r["num_tokens"] for r in rows)
    stats = {"seconds": seconds, "num_samples": len(rows), "tokens": tokens,
             "tokens_per_s": tokens / seconds if seconds > 0 else None, "backend": getattr(sampler, "backend", None)}
    return rows, stats


def add_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Stats of two sampling calls as one stage."""
    out = {k: a.get(k, 0) + b[k] for k in ("seconds", "tokens", "num_samples")} | {"backend": b.get("backend")}
    out["tokens_per_s"] = out["tokens"] / out["seconds"] if out["seconds"] > 0 else None
    return out
