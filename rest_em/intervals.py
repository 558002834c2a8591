"""How far a figure can move: bootstrap intervals over test problems, and paired differences.

    lo, hi = interval([1.0, 0.0, 1.0, ...])                  # 95% interval of the mean of per-problem values
    d = paired_difference(a_values, b_values)                 # b - a on the same problems
    d["diff"], d["interval"], d["significant"]                # the interval excludes 0

The unit of resampling is the **test problem**: a report's metric is the mean over problems of a
per-problem value (greedy pass 0/1, Chen et al.'s unbiased pass@k of that problem, maj@k 0/1), and
the interval says how far that mean moves when the test problems are redrawn from the same
population. Method: the expanded percentile bootstrap (Hesterberg 2015, "What teachers should know
about the bootstrap"): ``RESAMPLES`` resamples of the problems with replacement, drawn with
``numpy.random.default_rng(SEED)`` (so every report of the same data prints the same interval), and
the quantiles taken at ``Phi(sqrt(n/(n-1)) * z_{alpha/2})`` instead of ``alpha/2``, which undoes the
plain percentile interval's narrowness on a few dozen problems. Each resample is a vector of
multinomial counts, so a whole bootstrap is one matrix product: ``values @ counts.T / n``.

A **paired** difference compares two evaluations of the same problems (two iterations of one run,
or two runs): the per-problem differences ``b_i - a_i`` are resampled together, which removes the
problem-to-problem spread that both evaluations share. A run against itself gives exactly
``[0, 0]``. Runs of several seeds are pooled by averaging each problem's value over the seeds first
(``pool_seeds``), so the problems stay the unit of resampling.

Problems without a value (``None``: e.g. a verifier error, fewer than ``k`` valid samples) are left
out, as the metrics leave them out; a paired difference uses the problems both sides have.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def method(resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """The interval method as data (written into report.json and the reports)."""
    return {"method": "expanded percentile bootstrap over test problems", "level": level, "resamples": resamples, "seed": seed,
            "rng": "numpy.random.default_rng"}


def describe(m: Mapping[str, Any]) -> str:
    return (f"{100 * m['level']:.0f}% intervals: {m['method']}, {m['resamples']} resamples, seed {m['seed']} "
            f"({m['rng']})")


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(resamples, n)`` multinomial counts: how often each of ``n`` problems is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def bootstrap_means(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Resampled means of the last axis: ``values`` of shape ``(..., n)`` -> ``(..., resamples)``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    if n == 0:
        raise ValueError("bootstrap_means: no values")
    return values @ resample_counts(n, resamples, seed).T / n


def percentile_interval(means: np.ndarray, n: int, level: float = LEVEL) -> np.ndarray:
    """``[..., 2]``: the expanded percentile interval from resampled means (last axis) of ``n`` problems:
    quantiles ``Phi(sqrt(n/(n-1)) z_{(1-level)/2})`` and one minus it."""
    z = NormalDist().inv_cdf((1.0 - level) / 2.0)
    alpha = NormalDist().cdf(z * (n / (n - 1)) ** 0.5) if n > 1 else (1.0 - level) / 2.0
    return np.stack([np.quantile(means, alpha, axis=-1), np.quantile(means, 1.0 - alpha, axis=-1)], axis=-1)


def _present(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None], dtype=np.float64)


def interval(values: Sequence[float | None], resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
             ) -> list[float] | None:
    """``[low, high]`` of the mean of ``values`` (``None`` left out); None when no value is present."""
    x = _present(values)
    if x.size == 0:
        return None
    if np.all(x == x[0]):  # every resample has the same mean: no spread, and no rounding noise either
        return [float(x[0]), float(x[0])]
    lo, hi = percentile_interval(bootstrap_means(x, resamples, seed), x.size, level)
    return [float(lo), float(hi)]


def paired_difference(a: Mapping[str, float | None], b: Mapping[str, float | None], resamples: int = RESAMPLES,
                      seed: int = SEED, level: float = LEVEL) -> dict[str, Any] | None:
    """``b - a`` over the problems (keys) both have a value for, with its paired bootstrap interval.

    Returns ``{"diff", "interval": [low, high], "significant", "num_problems"}`` (``significant``: the
    interval excludes 0), or None when no problem has both values.
    """
    common = [p for p in a if a[p] is not None and b.get(p) is not None]
    if not common:
        return None
    d = np.array([float(b[p]) - float(a[p]) for p in sorted(common)])  # type: ignore[arg-type]
    diff = float(d.mean())
    if np.all(d == d[0]):
        lo = hi = float(d[0])
    else:
        lo, hi = (float(x) for x in percentile_interval(bootstrap_means(d, resamples, seed), d.size, level))
    return {"diff": diff, "interval": [lo, hi], "significant": bool(lo > 0 or hi < 0), "num_problems": len(common)}


def pool_seeds(per_seed: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """One value per problem from several seeds' values: their mean (seeds without a value left out)."""
    keys = dict.fromkeys(p for values in per_seed for p in values)
    out: dict[str, float | None] = {}
    for p in keys:
        vals = [v[p] for v in per_seed if v.get(p) is not None]
        out[p] = sum(vals) / len(vals) if vals else None  # type: ignore[arg-type]
    return out


# --- per-problem values of an evaluation (metrics.json's ``per_problem``) -----------------------


def metric_values(per_problem: Sequence[Mapping[str, Any]], metric: str, level: str | None = None
                  ) -> dict[str, float | None]:
    """Problem id -> the metric's per-problem value (only problems of ``level`` when given)."""
    return {r["problem_id"]: r.get(metric) for r in per_problem
            if level is None or ("?" if r.get("level") is None else str(r["level"])) == level}


def add_intervals(metrics: dict[str, Any], keys: Sequence[str], resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> None:
    """Set ``metrics["intervals"]`` and each ``by_level`` row's from ``metrics["per_problem"]`` (in place)."""
    rows = metrics.get("per_problem")
    if not rows:
        return
    metrics["intervals"] = {k: interval(list(metric_values(rows, k).values()), resamples, seed, level)
                            for k in keys if any(r.get(k) is not None for r in rows)}
    for lv, m in (metrics.get("by_level") or {}).items():
        m["intervals"] = {k: interval(list(metric_values(rows, k, lv).values()), resamples, seed, level)
                          for k in keys if any(r.get(k) is not None for r in rows)}
