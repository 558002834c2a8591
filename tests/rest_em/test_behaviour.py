"""maj@k for code through the evaluation stage: programs vote by their outputs, crashes do not vote."""

from __future__ import annotations

import json
import types

from rest_em.behaviour import INPUTS, votes_by_behaviour
from rest_em.config import EvalSection, VerifierSection
from rest_em.evaluation import evaluate
from rest_em.problem_sets import ProblemSet
from rest_em.rundir import RunDir
from rest_em.sampling.params import Completion
from rest_em.tasks.base import Problem
from verifiers.verdict import Verdict

STDIO = {"style": "stdio", "inputs": ["1\n", "2\n"], "outputs": ["2\n", "4\n"]}
# Sampled programs per problem, in sample order: "good:X" passes and behaves as X, "bad:X" fails and
# behaves as X, "crash" fails and does not vote.
PROGRAMS = {
    "p0": ["bad:a", "good:b", "good:b", "bad:a"],     # 2-2 tie: the earliest group (bad) wins -> 0
    "p1": ["crash", "crash", "bad:a", "good:b"],      # 1-1 among voters: the earlier one (bad) wins -> 0
    "p2": ["crash", "good:b", "bad:a", "good:b"],     # good 2, bad 1 -> 1
    "p3": ["crash", "crash", "crash", "crash"],       # nobody votes -> 0
}


class FakeCodeVerifier:
    def __init__(self, seen):
        self.seen = seen

    def parse_item(self, row, where=""):
        return row

    def verify_batch(self, items):
        return [Verdict.passed() if it["response"].startswith("good") else Verdict.failed("wrong_answer") for it in items]

    def behaviour_batch(self, items):
        self.seen += [it["response"] for it in items]
        return [(None, "runtime_error") if it["response"] == "crash" else ((it["response"].split(":")[1],) * 2, "ok")
                for it in items]


class FakeSampler:
    def generate(self, prompts, params, desc=""):
        if params.temperature == 0:
            return [[Completion("good:b", "stop", 3)] for _ in prompts]
        return [[Completion(t, "stop", 3) for t in PROGRAMS[p]][: params.n] for p in prompts]


def test_code_maj_votes_by_behaviour_with_the_math_tie_rule(tmp_path):
    seen: list[str] = []
    verifier = FakeCodeVerifier(seen)
    problems = [Problem(pid, pid, {"tests": STDIO}, level=1) for pid in PROGRAMS]
    lazy = types.SimpleNamespace(get=lambda: verifier, item_fields=lambda: {})
    test = ProblemSet("eval", problems, {p: p for p in PROGRAMS}, (), "code", lazy, None)
    assert votes_by_behaviour(test)
    rd = RunDir(tmp_path)
    policy = types.SimpleNamespace(sampler=lambda: FakeSampler())
    section = EvalSection(n=4, k_list=[1, 4], maj_k=4, temperature=1.0)
    m = evaluate(rd, 0, policy, test, section, VerifierSection())
    per = {r["problem_id"]: r["maj@4"] for r in m["per_problem"]}
    assert per == {"p0": 0.0, "p1": 0.0, "p2": 1.0, "p3": 0.0}
    assert m["maj@4"] == 0.25 and m["pass@4"] == 0.75 and INPUTS in m["maj_by"]
    rows = [json.loads(line) for line in (tmp_path / "iter_00" / "eval" / "behaviour.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and sum(r["behaviour"] is None for r in rows) == 7
    assert rd.info(0, "eval_behaviour")["voting"] == 9
    # resumed: the programs are not run again
    evaluate(rd, 0, policy, test, section, VerifierSection())
    assert len(seen) == 16


def test_no_code_maj_for_tests_without_inputs(tmp_path):
    he = {"style": "humaneval", "prompt": "", "test": "def check(c): pass", "entry_point": "f"}
    test = ProblemSet("eval", [Problem("h", "h", {"tests": he})], {"h": "h"}, (), "code", None, None)
    assert not votes_by_behaviour(test)
