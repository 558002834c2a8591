"""pass@k against brute force, maj@k grouping and its tie rule, per-level breakdown, error handling."""

from __future__ import annotations

import itertools

import pytest

from rest_em.metrics import EvalRecord, compute_metrics, majority_groups, majority_winner, pass_at_k


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(outcomes)), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(outcomes, k), abs=1e-12)


def test_pass_at_k_large_n_is_stable():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert 0.0 <= pass_at_k(1000, 3, 100) <= 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def exact(pairs):
    return [a == b for a, b in pairs]


def fraction_equal(pairs):
    """Treats "1/2" and "0.5" as the same answer, like the math verifier."""
    canon = {"1/2": "0.5"}
    return [canon.get(a, a) == canon.get(b, b) for a, b in pairs]


def test_majority_groups_use_equivalence():
    answers = ["0.5", "3", None, "1/2", "3", "0.5"]
    same = lambda a, b: fraction_equal([(a, b)])[0]  # noqa: E731
    assert majority_groups(answers, same) == [[0, 3, 5], [1, 4]]


def test_tie_goes_to_the_earliest_sampled_answer():
    # "7" (first seen at index 0) and "9" (first seen at 1) both have two votes: "7" wins.
    groups = majority_groups(["7", "9", "9", "7"], lambda a, b: a == b)
    assert majority_winner(groups) == [0, 3]
    wins_7 = EvalRecord("p", 1, samples=[("pass", "7"), ("fail", "9"), ("fail", "9"), ("pass", "7")])
    wins_9 = EvalRecord("q", 1, samples=[("fail", "9"), ("pass", "7"), ("pass", "7"), ("fail", "9")])
    m = compute_metrics([wins_7, wins_9], k_list=[1], maj_k=4, equivalent=exact)
    assert m["maj@4"] == pytest.approx(0.5)


def test_maj_k_votes_over_first_k_and_skips_missing_answers():
    r = EvalRecord("p", 2, samples=[("fail", None), ("fail", None), ("pass", "1/2"), ("fail", "4"), ("fail", "4"), ("fail", "4")])
    # First 4: one vote each for "1/2" and "4" -> tie -> earlier "1/2" (pass) wins.
    assert compute_metrics([r], [1], 4, fraction_equal)["maj@4"] == 1.0
    # First 6: "4" has three votes.
    assert compute_metrics([r], [1], 6, fraction_equal)["maj@6"] == 0.0
    nobody = EvalRecord("q", 2, samples=[("fail", None)] * 4)
    assert compute_metrics([nobody], [1], 4, exact)["maj@4"] == 0.0


def test_equivalence_is_asked_once_per_distinct_pair():
    calls = []

    def spy(pairs):
        calls.append(list(pairs))
        return fraction_equal(pairs)

    recs = [EvalRecord(str(i), 1, samples=[("pass", "0.5"), ("pass", "1/2"), ("fail", "3"), ("pass", "0.5")]) for i in range(3)]
    m = compute_metrics(recs, [1, 2], 4, spy)
    assert len(calls) == 1 and sorted(calls[0]) == [("0.5", "1/2"), ("0.5", "3"), ("1/2", "3")]
    assert m["maj@4"] == 1.0


def test_overall_and_per_level():
    recs = [
        EvalRecord("a", 1, greedy="pass", samples=[("pass", "1"), ("pass", "1")]),
        EvalRecord("b", 1, greedy="fail", samples=[("fail", "2"), ("pass", "1")]),
        EvalRecord("c", 2, greedy="fail", samples=[("fail", "5"), ("fail", "6")]),
        EvalRecord("d", None, greedy="pass", samples=[("pass", "1"), ("fail", "0")]),
    ]
    m = compute_metrics(recs, [1, 2], 2, exact)
    assert m["num_problems"] == 4
    assert m["greedy_pass@1"] == pytest.approx(0.5)
    assert m["pass@1"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert m["pass@2"] == pytest.approx(3 / 4)
    assert m["maj@2"] == pytest.approx(2 / 4)  # a: "1"; b: tie -> "2" (fail); c: fail; d: tie -> "1" (pass)
    assert list(m["by_level"]) == ["1", "2", "?"]
    assert m["by_level"]["1"]["pass@1"] == pytest.approx(0.75)
    assert m["by_level"]["2"]["greedy_pass@1"] == 0.0
    assert m["verdicts"]["sampled"] == {"pass": 4, "fail": 4, "error": 0}


def test_errors_are_left_out_and_counted():
    recs = [
        EvalRecord("a", 1, greedy="error", samples=[("error", "1"), ("error", "1")]),
        EvalRecord("b", 1, greedy="pass", samples=[("pass", "1"), ("error", None)]),
    ]
    m = compute_metrics(recs, [1, 2], 2, exact)
    assert m["greedy_pass@1"] == 1.0 and m["excluded"]["greedy_pass@1"] == 1
    assert m["pass@1"] == 1.0 and m["excluded"]["pass@1"] == 1  # a has no valid sample
    assert m["pass@2"] is None and m["excluded"]["pass@2"] == 2  # nobody has 2 valid samples
    assert m["verdicts"]["greedy"]["error"] == 1 and m["verdicts"]["sampled"]["error"] == 3
