"""SFT on the human-written solutions, the paper's baseline (Singh et al. 2023, "Beyond Human Data",
section 5: ReST-EM's self-generated data against fine-tuning on the references of the same problems).

``algorithm: sft`` fine-tunes the base model once on the reference solution of every train problem
(``source: reference`` rows of ``iter_01/train_set.jsonl``), with the same ``training.*`` settings as
ReST-EM's M-step, and evaluates that model like any iteration. It samples nothing from the policy:
there is no E-step (its ``improve`` builds the reference rows and trains), so the run's train coverage
is ``—`` and its compute is the M-step and the evaluations alone.

One step is the whole algorithm: ``iterations()`` is 1 whatever ``iterations`` says, and a larger
``iterations`` is named in the log and in the dataset stage's record (``whole_algorithm``), which the
report prints. Reference solutions: the tasks ``hpt_gate`` uses (``REFERENCE_TASKS``: math
solutions end in ``\\boxed{}``, code references fenced); any other task, or one whose train problems
have no reference, is refused before the run starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rest_em.algorithms.base import Algorithm, Rows
from rest_em.algorithms.hpt import reference_completion, require_references
from rest_em.config import ConfigError
from rest_em.mstep import m_step
from rest_em.policy import Policy

if TYPE_CHECKING:
    from pathlib import Path

    from rest_em.problem_sets import ProblemSet, ProblemSets

logger = logging.getLogger(__name__)

ONE_STEP = "one step is the whole algorithm: iteration 1 trains the base model on the reference solutions; " \
           "further iterations would repeat it and are not run"


def reference_rows(train: "ProblemSet", iteration: int) -> tuple[Rows, dict[str, Any]]:
    """One row per train problem with a reference solution, in problem order, and the stage's counts."""
    rows: Rows = []
    missing = 0
    for p in train.problems:
        ref = reference_completion(train.domain, p)
        if ref is None:
            missing += 1
            continue
        rows.append({"problem_id": p.problem_id, "sample_idx": None, "iteration": iteration,
                     "prompt": train.prompts[p.problem_id], "completion": ref, "source": "reference"})
    return rows, {"train_problems": len(train.problems), "references": len(rows), "problems_without_reference": missing}


_NO_ESTEP = "sft samples nothing on the train problems (no E-step)"


class SFT(Algorithm):
    name = "sft"
    source = "Singh et al. 2023, Beyond Human Data (arXiv 2312.06585): the SFT-on-human-data baseline"
    own_set = True
    empty_reason = "no reference solutions"
    unused_keys = {
        "sampling.n": _NO_ESTEP, "sampling.temperature": _NO_ESTEP, "sampling.top_k": _NO_ESTEP,
        "sampling.top_p": _NO_ESTEP, "sampling.max_tokens": _NO_ESTEP, "sampling.seed": _NO_ESTEP,
        "filter": "sft trains on every reference solution, no verified samples are filtered",
        "mstep": "sft trains once from the base model",
        "iterations": ONE_STEP,
    }

    def iterations(self) -> int:
        return 1

    def check(self, sets: "ProblemSets") -> None:
        require_references(sets, "algorithm sft trains on")
        if self.cfg.iterations > 1:
            logger.warning("sft: %s (iterations=%d: iteration 1 only)", ONE_STEP, self.cfg.iterations)
        if self.init_from != "base":
            raise ConfigError("algorithm sft trains from the base model; mstep.init: previous has nothing to continue from")

    def init(self, iteration: int, policy: Policy, free_memory: Callable[[], None]) -> "Path":
        return self.base

    def improve(self, iteration: int, policy: Policy, sets: "ProblemSets") -> Policy:
        """No E-step: the reference rows, then the M-step from the base model."""
        rows = self.train_set(iteration, sets.train, [])
        free_memory = policy.samplers.make_room_for_training
        step = m_step(self.rd, iteration, self.base, rows, self.trainer(), free_memory=free_memory,
                      empty_reason=self.empty_reason)
        return Policy(self.base if step.skipped else step.checkpoint, policy.samplers)

    def train_set(self, iteration: int, train: "ProblemSet", verified: Sequence[Any]) -> Rows:
        def compute() -> tuple[Rows, dict[str, Any]]:
            rows, info = reference_rows(train, iteration)
            info = {**info, "num_rows": len(rows), "sources": {"reference": len(rows)}, "whole_algorithm": ONE_STEP}
            logger.info("sft dataset: %s", info)
            return rows, info

        return self.rd.stage_rows(iteration, "dataset", "train_set.jsonl", compute)


ALGORITHM = SFT
