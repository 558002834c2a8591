"""GRPO rewards from verdicts: pass 1, fail 0, error no reward (None), counted; too many errors stop the step."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rest_em.online.rewards import VerifierReward, completion_text, reward_of
from rest_em.tasks.base import Problem
from rest_em.verification import VerifierOutage
from verifiers.verdict import Verdict


class ScriptedVerifier:
    """The completion text names its verdict: "pass", "fail" or "error"."""

    domain = "math"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def parse_item(self, row, where=""):
        return row

    def verify_batch(self, items):
        self.batches.append(len(items))
        make = {"pass": Verdict.passed, "fail": lambda: Verdict.failed("wrong_answer"),
                "noanswer": lambda: Verdict.failed("no_answer"),
                "error": lambda: Verdict.errored("sandbox_unavailable", "Cannot connect to the Docker daemon")}
        return [make[it["response"].split()[-1]]() for it in items]

    def close(self):
        pass


@dataclass
class Lazy:
    verifier: ScriptedVerifier

    def get(self):
        return self.verifier


@dataclass
class FakeSet:
    verifier: Lazy
    problems: list = field(default_factory=lambda: [Problem(f"p{i}", "q", {"reference": "1", "reference_format": "answer"})
                                                    for i in range(4)])
    stop: tuple = ("STOP",)
    domain: str = "math"

    def by_id(self):
        return {p.problem_id: p for p in self.problems}


def make(max_error_rate=0.5, partial_credit=None):
    v = ScriptedVerifier()
    return VerifierReward(FakeSet(Lazy(v)), max_error_rate=max_error_rate, partial_credit=partial_credit), v


def test_verdicts_become_rewards_and_error_is_no_reward():
    assert (reward_of("pass"), reward_of("fail"), reward_of("error")) == (1.0, 0.0, None)
    reward, v = make()
    completions = ["x pass", "x fail", "x error", "x pass"]
    out = reward(prompts=["q"] * 4, completions=completions, problem_id=["p0", "p0", "p1", "p1"])
    assert out == [1.0, 0.0, None, 1.0]
    assert out[2] is None and out[2] != 0 and out[2] != 1  # an error is never a 0 or a 1
    assert v.batches == [4]  # the whole batch in one verify_batch call
    assert reward.total == {"pass": 2, "fail": 1, "error": 1}
    (batch,) = reward.drain()
    assert [(r["problem_id"], r["sample_idx"]) for r in batch.rows] == [("p0", 0), ("p0", 1), ("p1", 0), ("p1", 1)]
    assert batch.counts == {"pass": 2, "fail": 1, "error": 1} and batch.error_rate == 0.25
    assert reward.drain() == []


def test_stop_strings_cut_the_text_the_verifier_sees():
    reward, v = make()
    assert reward(prompts=["q"], completions=["ok pass STOP then fail"], problem_id=["p0"]) == [1.0]
    assert reward(prompts=["q"], completions=[[{"role": "assistant", "content": "y fail"}]], problem_id=["p0"]) == [0.0]
    assert completion_text("abc") == "abc"


def test_error_rate_above_the_threshold_stops_the_step():
    reward, _ = make(max_error_rate=0.25)
    assert reward(prompts=["q"] * 4, completions=["pass", "fail", "fail", "error"], problem_id=["p0"] * 4)[3] is None
    reward.step = 7
    with pytest.raises(VerifierOutage, match=r"GRPO step 7: 2 of 4 verdicts are errors.*max_error_rate=0.25.*"
                                             r"Docker engine.*resumes from the last checkpoint"):
        reward(prompts=["q"] * 4, completions=["pass", "error", "fail", "error"], problem_id=["p0"] * 4)


def test_unknown_problem_is_an_error_not_a_fail():
    reward, _ = make()
    assert reward(prompts=["q", "q"], completions=["pass", "pass"], problem_id=["p0", "nope"]) == [1.0, None]


def test_partial_credit_rewards_a_fail_by_its_reason_and_never_an_error():
    assert reward_of("fail", "wrong_answer", {"wrong_answer": 0.2}) == 0.2
    assert reward_of("fail", "no_answer", {"wrong_answer": 0.2}) == 0.0
    assert reward_of("pass", "correct", {"wrong_answer": 0.2}) == 1.0
    assert reward_of("error", "sandbox_unavailable", {"wrong_answer": 0.2}) is None
    reward, _ = make(partial_credit={"wrong_answer": 0.25})
    out = reward(prompts=["q"] * 4, completions=["pass", "fail", "noanswer", "error"], problem_id=["p0"] * 4)
    assert out == [1.0, 0.25, 0.0, None]
    (batch,) = reward.drain()
    assert [r["reward"] for r in batch.rows] == out and batch.counts == {"pass": 1, "fail": 2, "error": 1}


@pytest.mark.parametrize("credit, match", [({"correct": 0.5}, "not a fail reason"),
                                           ({"wrong_answer": 1.0}, r"in \[0, 1\)"),
                                           ({"wrong_answer": -0.1}, r"in \[0, 1\)"),
                                           ({"wrong_answer": True}, r"in \[0, 1\)")])
def test_partial_credit_is_checked_in_the_config(credit, match):
    from rest_em.algorithms.grpo import GRPOSection

    with pytest.raises(ValueError, match=match):
        GRPOSection(partial_credit=credit)
    assert GRPOSection(partial_credit={"no_code": 0.0, "wrong_answer": 0.1}).partial_credit["wrong_answer"] == 0.1


def test_fail_reasons_name_every_reason_the_verifiers_fail_with():
    import re
    from pathlib import Path

    from verifiers.verdict import FAIL_REASONS

    src = Path(__file__).resolve().parents[2] / "verifiers"
    used = {m for p in src.rglob("*.py") for m in re.findall(r'Verdict\.failed\(\s*"([a-z_]+)"', p.read_text())}
    assert used and used <= FAIL_REASONS, sorted(used - FAIL_REASONS)
