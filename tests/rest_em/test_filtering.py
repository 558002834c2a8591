"""The SFT filter: errors dropped, identical solutions deduplicated, at most `cap` per problem, seeded."""

from __future__ import annotations

import pytest

from rest_em.filtering import build_sft_set
from rest_em.verification import join_verdicts

PROMPTS = {"a": "PA", "b": "PB", "c": "PC"}


def rows(spec):
    """spec: {problem: [(text, verdict), ...]} -> (samples, verdicts)"""
    samples, verdicts = [], []
    for pid, items in spec.items():
        for i, (text, verdict) in enumerate(items):
            samples.append({"problem_id": pid, "sample_idx": i, "iteration": 1, "text": text,
                            "finish_reason": "stop", "num_tokens": 3})
            verdicts.append({"problem_id": pid, "sample_idx": i, "verdict": verdict,
                             "reason": {"pass": "correct", "fail": "wrong_answer", "error": "unparseable_reference"}[verdict]})
    return samples, verdicts


def test_errors_are_counted_and_never_kept():
    samples, verdicts = rows({"a": [("x", "error"), ("y", "pass")], "b": [("z", "error")], "c": [("w", "fail")]})
    sft, stats = build_sft_set(join_verdicts(samples, verdicts), PROMPTS, cap=10, dedupe=True, seed=0, iteration=1)
    assert [(r["problem_id"], r["sample_idx"]) for r in sft] == [("a", 1)]
    assert stats.verdicts == {"pass": 1, "fail": 1, "error": 2}
    assert stats.error_reasons == {"unparseable_reference": 2}
    assert stats.problems_with_pass == 1 and stats.num_problems == 3
    assert stats.coverage == pytest.approx(1 / 3)
    assert sft[0] == {"problem_id": "a", "sample_idx": 1, "iteration": 1, "prompt": "PA", "completion": "y",
                      "source": "sample"}


def test_dedupe_keeps_the_first_copy():
    samples, verdicts = rows({"a": [("s1", "pass"), (" s1\n", "pass"), ("s2", "pass"), ("s1", "fail")]})
    sft, stats = build_sft_set(join_verdicts(samples, verdicts), PROMPTS, cap=10, dedupe=True, seed=0, iteration=1)
    assert [r["sample_idx"] for r in sft] == [0, 2]
    assert stats.duplicates_dropped == 1
    sft, _ = build_sft_set(join_verdicts(samples, verdicts), PROMPTS, cap=10, dedupe=False, seed=0, iteration=1)
    assert [r["sample_idx"] for r in sft] == [0, 1, 2]


def test_cap_is_seeded_and_random():
    samples, verdicts = rows({"a": [(f"s{i}", "pass") for i in range(20)], "b": [("t", "pass")]})
    picks = set()
    for seed in range(6):
        sft, stats = build_sft_set(join_verdicts(samples, verdicts), PROMPTS, cap=3, dedupe=True, seed=seed, iteration=1)
        again, _ = build_sft_set(join_verdicts(samples, verdicts), PROMPTS, cap=3, dedupe=True, seed=seed, iteration=1)
        assert sft == again  # same seed, same choice
        a_rows = [r["sample_idx"] for r in sft if r["problem_id"] == "a"]
        assert len(a_rows) == 3 and a_rows == sorted(a_rows)
        assert [r["problem_id"] for r in sft].count("b") == 1
        assert stats.capped_dropped == 17 and stats.num_kept == 4
        picks.add(tuple(a_rows))
    assert len(picks) > 1  # not simply the first three


def test_missing_verdict_is_an_error():
    samples, verdicts = rows({"a": [("x", "pass"), ("y", "pass")]})
    with pytest.raises(ValueError, match="no verdict for sample a#1"):
        build_sft_set(join_verdicts(samples, verdicts[:1]), PROMPTS, cap=2, dedupe=True, seed=0, iteration=1)
