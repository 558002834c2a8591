"""E-step: sample solutions to the train problems from the current policy and verify each one.

    verified = e_step(rd, iteration, policy, sets.train, cfg.sampling, cfg.verifier)   # [VerifiedSample]

Outputs (each written atomically, then its stage marker):
``iter_NN/samples.jsonl``  {problem_id, sample_idx, iteration, text, finish_reason, num_tokens}
``iter_NN/verdicts.jsonl`` {problem_id, sample_idx, verdict, reason}
"""

from __future__ import annotations

import logging
from typing import Any

from rest_em.config import SamplingSection, VerifierSection
from rest_em.generation import generate_rows
from rest_em.policy import Policy
from rest_em.problem_sets import ProblemSet
from rest_em.rundir import RunDir
from rest_em.verification import VerifiedSample, join_verdicts, verdict_stage

logger = logging.getLogger(__name__)


def sample_params(section: SamplingSection, extra_stop: tuple[str, ...], iteration: int) -> Any:
    from rest_em.sampling.params import SampleParams

    # A different seed per iteration: the same seed on a similar policy would repeat its samples.
    return SampleParams(n=section.n, temperature=section.temperature, top_k=section.top_k, top_p=section.top_p,
                        max_tokens=section.max_tokens, seed=section.seed + 1000 * iteration,
                        stop=tuple(dict.fromkeys([*section.stop, *extra_stop])))


def e_step(rd: RunDir, iteration: int, policy: Policy, train: ProblemSet, sampling: SamplingSection,
           verifier: VerifierSection) -> list[VerifiedSample]:
    """Sample ``sampling.n`` solutions per train problem from ``policy``, then verify them: every sample joined
    with its verdict, read once here (the algorithms build their M-step sets from this value, never from the
    files again)."""

    def sample() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        params = sample_params(sampling, train.stop, iteration)
        rows, stats = generate_rows(policy.sampler(), train, params, iteration, f"E-step {iteration} sampling",
                                    shard_dir=rd.iter_dir(iteration) / "shards" / "samples", seeding=sampling.seeding)
        logger.info("E-step %d: %d samples in %.0f s", iteration, len(rows), stats["seconds"])
        return rows, stats

    samples = rd.stage_rows(iteration, "samples", "samples.jsonl", sample)
    verdicts = verdict_stage(rd, iteration, "verdicts", "verdicts.jsonl", samples, train, verifier.max_error_rate)
    logger.info("E-step %d verdicts: %s", iteration, (rd.info(iteration, "verdicts") or {}).get("counts"))
    return join_verdicts(samples, verdicts, where=str(rd.iter_dir(iteration) / "verdicts.jsonl"))
