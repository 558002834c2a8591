"""The algorithm interface, with ReST-EM (Singh et al. 2023) as its plain case.

An algorithm decides four things; the loop (rest_em/loop.py) does the rest the same way for all:

- ``condition(policy)``: the policy the E-step and the evaluation sample from (RCRL appends its reward
  token to every prompt); default: the policy as is.
- ``train_set(t, train)``: the M-step's rows of iteration ``t``. The filter stage (``sft.jsonl``: capped,
  deduplicated correct samples, the report's train coverage) always runs; an algorithm with rows of its
  own (``own_rows``) or with ``filter.accumulate`` writes them as the stage ``dataset``
  (``iter_NN/train_set.jsonl``, every row with ``source: sample | reference``).
- ``init(t, policy, free_memory)``: where the M-step starts: the base model (``mstep.init: base``) or the
  previous iteration's policy (``previous``).
- ``trainer()``: the ``mstep.Trainer`` (SFT unless the algorithm says otherwise).

ReST-EM: this iteration's correct samples, from the base model, with SFT.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rest_em.filtering import filter_stage
from rest_em.mstep import Trainer
from rest_em.rundir import RunDir, read_rows
from rest_em.training.launch import make_trainer

if TYPE_CHECKING:
    from rest_em.config import Config
    from rest_em.policy import Policy
    from rest_em.problem_sets import ProblemSet, ProblemSets

Rows = list[dict[str, Any]]

logger = logging.getLogger(__name__)


class Algorithm:
    name = "rest_em"
    source = "Singh et al. 2023, Beyond Human Data (arXiv 2312.06585)"
    default_accumulate = False  # filter.accumulate: null
    default_init = "base"  # mstep.init: null
    own_set = False  # True: the M-step trains on rows of the algorithm's own (own_rows), not sft.jsonl as is
    empty_reason = "no correct samples"  # why an M-step with no rows is skipped

    def __init__(self, cfg: "Config", rd: RunDir, base: Path) -> None:
        self.cfg, self.rd, self.base = cfg, rd, Path(base)
        self.accumulate = cfg.filter.accumulate if cfg.filter.accumulate is not None else self.default_accumulate
        self.init_from = cfg.mstep.init or self.default_init

    # -- hooks ------------------------------------------------------------------------------------

    def check(self, sets: "ProblemSets") -> None:
        """Raise ``ConfigError`` when the algorithm cannot run on these problems (before any stage runs)."""

    def condition(self, policy: "Policy") -> "Policy":
        return policy

    def trainer(self) -> Trainer:
        return make_trainer(self.cfg.training)

    def init(self, iteration: int, policy: "Policy", free_memory: Callable[[], None]) -> Path:
        return self.base if self.init_from == "base" else Path(policy.path)

    def own_rows(self, iteration: int, train: "ProblemSet", sft: Rows) -> tuple[Rows, dict[str, Any]]:
        """This iteration's rows before accumulation; default: the filter's correct samples."""
        return [{**r, "source": "sample"} for r in sft], {}

    def row_key(self, row: dict[str, Any]) -> tuple:
        """Rows with the same key are one row when sets of several iterations are joined."""
        return row["problem_id"], row["prompt"], row["completion"].strip()

    # -- the dataset stage ------------------------------------------------------------------------

    def train_set(self, iteration: int, train: "ProblemSet") -> Rows:
        sft = filter_stage(self.rd, iteration, train, self.cfg.filter)
        if not (self.own_set or self.accumulate):
            return sft  # ReST-EM: the filter's rows are the M-step's

        def compute() -> tuple[Rows, dict[str, Any]]:
            rows, info = self.own_rows(iteration, train, sft)
            if self.accumulate:
                previous = self.previous_set(iteration)
                rows, dropped = accumulate(previous, rows, self.row_key)
                info = {**info, "accumulated": True, "rows_from_earlier_iterations": len(previous),
                        "duplicates_dropped_across_iterations": dropped}
            info = {**info, "num_rows": len(rows),
                    "sources": dict(sorted(Counter(r.get("source", "sample") for r in rows).items()))}
            logger.info("%s dataset %d: %s", self.name, iteration, info)
            return rows, info

        return self.rd.stage_rows(iteration, "dataset", "train_set.jsonl", compute)

    def previous_set(self, iteration: int) -> Rows:
        if iteration <= 1:
            return []
        path = self.rd.iter_dir(iteration - 1) / "train_set.jsonl"
        if not self.rd.done(iteration - 1, "dataset"):
            raise RuntimeError(f"{path} is missing: iteration {iteration - 1} has no finished dataset stage to "
                               "accumulate (was filter.accumulate changed in this run?)")
        return read_rows(path)


def accumulate(previous: Rows, new: Rows, key: Callable[[dict[str, Any]], tuple]) -> tuple[Rows, int]:
    """``previous`` then the rows of ``new`` not already there (by ``key``, first occurrence kept),
    ordered by problem; and how many rows of ``new`` were dropped as duplicates."""
    seen: set[tuple] = set()
    out: Rows = []
    dropped = 0
    for i, row in enumerate([*previous, *new]):
        k = key(row)
        if k in seen:
            dropped += i >= len(previous)
            continue
        seen.add(k)
        out.append(row)
    return sorted(out, key=lambda r: r["problem_id"]), dropped  # stable: earlier iterations first


class ReSTEM(Algorithm):
    """ReST-EM: the plain case (``algorithm: rest_em``, the default)."""
