"""Offline HPT gate (Lv et al. 2025, "Towards a Unified View of Large Language Model Post-Training",
arXiv 2509.04419): per problem, the E-step's pass rate decides the learning signal. HPT trains on a
problem's reference solution (SFT) when the policy's pass rate on it is at or below a gate
(``gamma = 0``: the policy solved none of its samples) and on the policy's own rollouts (RL) otherwise.
Offline here: the rollouts' part is ReST-EM's (SFT on the correct samples), so the SFT set is

    problems with pass rate <= hpt.threshold:  the reference solution  (source: reference)
    the others:                                their filtered correct samples  (source: sample)

The pass rate is passes / (passes + fails) of the iteration's E-step (``error`` verdicts excluded; a
problem with no valid verdict is not gated). Reference solutions: MATH, GSM8K, APPS, MBPP and the
embedded tasks (arithmetic, code_embedded); any other task is refused before the run starts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from rest_em.algorithms.base import Algorithm, Rows
from rest_em.config import ConfigError
from rest_em.fields import opt

if TYPE_CHECKING:
    from rest_em.problem_sets import ProblemSet, ProblemSets
    from rest_em.tasks.base import Problem
    from rest_em.verification import VerifiedSample

# Tasks whose train problems carry a reference solution (Problem.solution) that a model could have written.
REFERENCE_TASKS = ("arithmetic", "math", "gsm8k", "code_embedded", "apps", "mbpp", "dataset")  # dataset: with task.fields.solution


def reference_completion(domain: str, problem: "Problem") -> str | None:
    """The reference solution as a response: math solutions end in ``\\boxed{}`` already; code is fenced."""
    if problem.solution is None:
        return None
    if domain == "code" and not problem.solution.lstrip().startswith("```"):
        from rest_em.tasks.code_common import fenced

        return fenced(problem.solution)
    return problem.solution


@dataclass
class HPTSection:
    threshold: float = opt(0.0, "hpt_gate: a train problem whose E-step pass rate is at or below this trains on its "
                           "reference solution instead of its samples (Lv et al. 2025 use 0: only unsolved problems)")


def require_references(sets: "ProblemSets", who: str) -> None:
    """Refuse, before anything is sampled, train problems without reference solutions."""
    task = sets.train.task
    with_ref = sum(p.solution is not None for p in sets.train.problems)
    if task.name not in REFERENCE_TASKS or (sets.train.problems and not with_ref):
        raise ConfigError(f"{who} reference solutions of the train problems; task {task.name!r} "
                          f"has {'none' if not with_ref else 'no usable ones'} (tasks with reference solutions: "
                          f"{', '.join(REFERENCE_TASKS)}; `dataset` with task.fields.solution)")


def pass_rates(verified: Sequence["VerifiedSample"]) -> dict[str, float]:
    """Problem id -> passes / (passes + fails); problems with only ``error`` verdicts are left out."""
    counts: dict[str, Counter[str]] = {}
    for v in verified:
        counts.setdefault(v.problem_id, Counter())[v.verdict] += 1
    return {pid: c["pass"] / (c["pass"] + c["fail"]) for pid, c in counts.items() if c["pass"] + c["fail"]}


def gate_rows(sft: Rows, verified: Sequence["VerifiedSample"], train: "ProblemSet", threshold: float, iteration: int
              ) -> tuple[Rows, dict[str, Any]]:
    rates = pass_rates(verified)
    gated = sorted(pid for pid, rate in rates.items() if rate <= threshold)
    problems = train.by_id()
    rows = [{**r, "source": "sample"} for r in sft if r["problem_id"] not in set(gated)]
    missing = []
    for pid in gated:
        ref = reference_completion(train.domain, problems[pid])
        if ref is None:
            missing.append(pid)
            continue
        rows.append({"problem_id": pid, "sample_idx": None, "iteration": iteration, "prompt": train.prompts[pid],
                     "completion": ref, "source": "reference"})
    rows.sort(key=lambda r: (r["problem_id"], -1 if r["sample_idx"] is None else r["sample_idx"]))
    seen_ids = {v.problem_id for v in verified}
    return rows, {"threshold": threshold, "gated_problems": len(gated), "references_added": len(gated) - len(missing),
                  "gated_without_reference": len(missing), "problems_without_valid_verdicts": len(seen_ids - set(rates)),
                  "sample_rows_dropped_by_gate": sum(r["problem_id"] in set(gated) for r in sft)}


class HPTGate(Algorithm):
    name = "hpt_gate"
    source = "Lv et al. 2025, Towards a Unified View of LLM Post-Training (HPT, arXiv 2509.04419)"
    Section = HPTSection
    section = "hpt"
    own_set = True

    def check(self, sets: "ProblemSets") -> None:
        require_references(sets, "algorithm hpt_gate needs")

    def own_rows(self, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"], sft: Rows
                 ) -> tuple[Rows, dict[str, Any]]:
        return gate_rows(sft, verified, train, self.settings.threshold, iteration)


ALGORITHM = HPTGate
