"""The filter stage: from verified samples to the SFT set the M-step trains on.

    sft = filter_stage(rd, iteration, sets.train, verified, cfg.filter)   # iter_NN/sft.jsonl
    rows, stats = build_sft_set(verified, prompts, cap=10, dedupe=True, seed=0, iteration=1)

``verified`` is the E-step's value (``rest_em.verification.VerifiedSample``: each sample joined with its
verdict once, in ``join_verdicts``).

1. ``error`` verdicts (our side broke) are counted and dropped; they never enter the SFT set.
2. Only ``pass`` samples are kept; with ``dedupe`` identical solutions of one problem (same text after
   stripping surrounding whitespace) count once (the lowest ``sample_idx`` stays).
3. At most ``cap`` solutions per problem, drawn at random with a seed derived from ``seed``,
   ``iteration`` and the problem id (so a problem's choice does not depend on the others).

SFT rows: ``{problem_id, sample_idx, iteration, prompt, completion, source}``, ordered by problem then sample
(``source: sample``; algorithms that add reference solutions mark those ``reference``).
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from rest_em.rundir import RunDir

if TYPE_CHECKING:
    from rest_em.config import FilterSection
    from rest_em.problem_sets import ProblemSet
    from rest_em.verification import VerifiedSample

logger = logging.getLogger(__name__)


@dataclass
class FilterStats:
    num_problems: int  # problems sampled
    num_samples: int
    verdicts: dict[str, int]  # pass / fail / error counts
    error_reasons: dict[str, int]
    problems_with_pass: int  # train coverage numerator
    duplicates_dropped: int
    capped_dropped: int
    num_kept: int

    @property
    def coverage(self) -> float:
        return self.problems_with_pass / self.num_problems if self.num_problems else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "coverage": self.coverage}


def build_sft_set(
    verified: Iterable["VerifiedSample"],
    prompts: Mapping[str, str],
    cap: int,
    dedupe: bool,
    seed: int,
    iteration: int,
) -> tuple[list[dict[str, Any]], FilterStats]:
    """Keep the capped correct samples of ``verified`` (samples joined with their verdicts)."""
    if cap < 1:
        raise ValueError(f"filter.cap must be >= 1, got {cap}")
    counts: Counter[str] = Counter({"pass": 0, "fail": 0, "error": 0})
    error_reasons: Counter[str] = Counter()
    correct: dict[str, list["VerifiedSample"]] = defaultdict(list)
    problems: set[str] = set()
    num_samples = 0
    for s in verified:
        num_samples += 1
        problems.add(s.problem_id)
        counts[s.verdict] += 1
        if s.verdict == "error":
            error_reasons[s.reason or "unknown"] += 1
        elif s.verdict == "pass":
            correct[s.problem_id].append(s)
    if counts["error"]:
        logger.warning("%d samples had verifier errors (dropped): %s", counts["error"], dict(error_reasons))

    rows: list[dict[str, Any]] = []
    duplicates = capped = 0
    for pid in sorted(correct):
        kept = sorted(correct[pid], key=lambda s: s.sample_idx)
        if dedupe:
            seen: set[str] = set()
            unique = []
            for s in kept:
                key = s.text.strip()
                if key not in seen:
                    seen.add(key)
                    unique.append(s)
            duplicates += len(kept) - len(unique)
            kept = unique
        if len(kept) > cap:
            rng = random.Random(f"{seed}:{iteration}:{pid}")
            capped += len(kept) - cap
            kept = sorted(rng.sample(kept, cap), key=lambda s: s.sample_idx)
        for s in kept:
            rows.append({"problem_id": pid, "sample_idx": s.sample_idx, "iteration": iteration,
                         "prompt": prompts[pid], "completion": s.text, "source": "sample"})
    stats = FilterStats(len(problems), num_samples, dict(counts), dict(error_reasons), len(correct),
                        duplicates, capped, len(rows))
    return rows, stats


def filter_stage(rd: RunDir, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"],
                 section: "FilterSection") -> list[dict[str, Any]]:
    """Drop errors, dedupe, cap per problem; write ``sft.jsonl`` and return its rows."""

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows, stats = build_sft_set(verified, train.prompts, section.cap, section.dedupe, section.seed, iteration)
        logger.info("filter %d: %d SFT rows from %d problems (coverage %.1f%%)", iteration, len(rows),
                    stats.problems_with_pass, 100 * stats.coverage)
        return rows, stats.to_dict()

    return rd.stage_rows(iteration, "filter", "sft.jsonl", compute)
