"""Bootstrap intervals over test problems: coverage, paired differences, seeds pooled."""

from __future__ import annotations

import numpy as np
import pytest

from rest_em.intervals import (
    RESAMPLES,
    add_intervals,
    bootstrap_means,
    interval,
    paired_difference,
    percentile_interval,
    pool_seeds,
)
from rest_em.metrics import EvalRecord, compute_metrics, pass_at_k


def _coverage(values: np.ndarray, truth: float) -> float:
    """Share of rows (simulated reports) whose 95% interval of the row mean covers ``truth``."""
    lo, hi = percentile_interval(bootstrap_means(values, RESAMPLES, seed=7), values.shape[-1]).T
    return float(np.mean((lo <= truth) & (truth <= hi)))


def test_nominal_95_percent_intervals_cover_the_truth_93_to_97_percent_of_the_time():
    rng = np.random.default_rng(2024)
    # Known per-problem rates: a population of 10,000 problems, easy and hard mixed (Beta(0.6, 0.9)).
    population = rng.beta(0.6, 0.9, size=10_000)
    truth = float(population.mean())
    reports, problems = 1000, 100
    rates = population[rng.integers(0, population.size, size=(reports, problems))]  # each report's test problems
    greedy = (rng.random((reports, problems)) < rates).astype(float)  # one pass/fail per problem
    cov_greedy = _coverage(greedy, truth)
    # pass@4 from 8 samples per problem, Chen et al.'s estimator per problem; truth: E[1 - (1-p)^4].
    c = rng.binomial(8, rates)
    p4 = np.vectorize(lambda cc: pass_at_k(8, int(cc), 4))(c)
    cov_p4 = _coverage(p4, float(np.mean(1 - (1 - population) ** 4)))
    print(f"coverage over {reports} simulated reports of {problems} problems: greedy {cov_greedy:.3f}, pass@4 {cov_p4:.3f}")
    assert 0.93 <= cov_greedy <= 0.97
    assert 0.93 <= cov_p4 <= 0.97


def test_a_run_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(0)
    a = {f"p{i}": float(v) for i, v in enumerate(rng.random(48) < 0.4)}
    d = paired_difference(a, dict(a))
    assert d == {"diff": 0.0, "interval": [0.0, 0.0], "significant": False, "num_problems": 48}


def test_a_planted_20_point_difference_on_100_problems_is_significant_and_0_is_not():
    a = {f"p{i}": float(i < 40) for i in range(100)}
    better = {f"p{i}": float(i < 60) for i in range(100)}  # 20 more problems solved
    d = paired_difference(a, better)
    assert d["diff"] == pytest.approx(0.20)
    assert d["significant"] and 0 < d["interval"][0] < 0.2 < d["interval"][1]
    # the same score, different problems: 10 gained, 10 lost
    same = {f"p{i}": float(10 <= i < 50) for i in range(100)}
    d0 = paired_difference(a, same)
    assert d0["diff"] == 0.0 and not d0["significant"] and d0["interval"][0] < 0 < d0["interval"][1]
    # pairing matters: unpaired, a 5-point gain on 100 problems is within the noise; paired, when it
    # is 5 problems gained and none lost, it is not
    small = {f"p{i}": float(i < 45) for i in range(100)}
    assert paired_difference(a, small)["significant"]
    lo, hi = interval(list(a.values()))
    assert lo < 0.45 < hi


def test_interval_is_seeded_and_in_the_metrics_units():
    vals = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5, None]
    assert interval(vals) == interval(vals)
    lo, hi = interval(vals)
    assert 0.0 <= lo < np.mean([v for v in vals if v is not None]) < hi <= 1.0
    assert interval([None, None]) is None
    assert interval([1.0, 1.0, 1.0]) == [1.0, 1.0]


def test_paired_difference_uses_problems_both_sides_have():
    a = {"p1": 1.0, "p2": 0.0, "p3": None}
    b = {"p1": 1.0, "p2": 1.0, "p3": 1.0, "p4": 0.0}
    d = paired_difference(a, b)
    assert d["num_problems"] == 2 and d["diff"] == 0.5
    assert paired_difference({"p1": None}, {"p1": 1.0}) is None


def test_pool_seeds_averages_each_problem_over_the_seeds():
    pooled = pool_seeds([{"p1": 1.0, "p2": 0.0}, {"p1": 0.0, "p2": None}, {"p1": 1.0, "p2": 1.0}])
    assert pooled == {"p1": pytest.approx(2 / 3), "p2": 0.5}


def test_intervals_of_metrics_overall_and_per_level():
    recs = [EvalRecord(f"p{i}", level=1 + i % 2, greedy="pass" if i % 3 else "fail",
                       samples=[("pass" if (i + j) % 2 else "fail", str(j)) for j in range(4)]) for i in range(30)]
    m = compute_metrics(recs, [1, 2], None, None)
    assert len(m["per_problem"]) == 30 and m["per_problem"][0]["problem_id"] == "p0"
    add_intervals(m, ["greedy_pass@1", "pass@1", "pass@2", "maj@4"])
    assert set(m["intervals"]) == {"greedy_pass@1", "pass@1", "pass@2"}  # maj@4 not computed, no interval
    for key, (lo, hi) in m["intervals"].items():
        assert lo - 1e-12 <= m[key] <= hi + 1e-12
    for lv, row in m["by_level"].items():
        lo, hi = row["intervals"]["greedy_pass@1"]
        assert lo <= row["greedy_pass@1"] <= hi
    assert m["by_level"]["1"]["intervals"] != m["intervals"]
