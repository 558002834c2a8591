"""ReST-EM (Singh et al. 2023), the whole loop. Run it with ``rest-em iterate --config ...``.

    iteration 0: evaluate the base model (the baseline row)
    iteration t: E-step  sample cfg.sampling.n solutions per train problem from the policy of t-1,
                         score each with the binary verifier
                 filter  drop errors, dedupe, keep at most cfg.filter.cap correct solutions per problem
                 M-step  fine-tune the BASE model (never the previous iterate) on them
                 evaluate the new policy on each held-out set (test, transfer); rewrite the report

Every stage is skipped when its completion marker exists, so re-running the same command resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rest_em.config import Config, ConfigError
from rest_em.estep import e_step
from rest_em.evaluation import evaluate
from rest_em.filtering import filter_stage
from rest_em.mstep import m_step
from rest_em.policy import Policy, Samplers
from rest_em.problem_sets import build_problem_sets
from rest_em.report import write_report
from rest_em.rundir import RunDir
from rest_em.training.launch import make_trainer, refuse_under_launcher

logger = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Run (or resume) ``cfg.iterations`` ReST-EM iterations; returns the path of report.md."""
    if cfg.algorithm == "grpo":  # online RL (issue 14); the algorithm registry (issue 13) takes this over
        from rest_em.online.grpo import run as run_grpo

        return run_grpo(cfg)
    if cfg.algorithm != "rest_em":
        raise ConfigError(f"algorithm {cfg.algorithm!r} is not part of this build yet; use algorithm: rest_em")
    refuse_under_launcher()  # one driver process; only the M-step runs under a launcher (training.launcher)
    for warning in cfg.warnings():
        logger.warning("config: %s", warning)
    rd = RunDir.open(cfg)
    base = cfg.model_path()
    sets, samplers, trainer = build_problem_sets(cfg, base), Samplers(cfg), make_trainer(cfg.training)

    def evaluate_all(t: int, policy: Policy) -> None:
        for test in sets.evals:
            evaluate(rd, t, policy, test, cfg.eval, cfg.verifier)
        write_report(rd.root)

    try:
        policy = Policy(base, samplers)
        evaluate_all(0, policy)
        for t in range(1, cfg.iterations + 1):
            # E-step: sample from the policy of iteration t-1 and verify every sample.
            e_step(rd, t, policy, sets.train, cfg.sampling, cfg.verifier)
            sft = filter_stage(rd, t, sets.train, cfg.filter)
            # M-step: always from the base model. With nothing to train on, the base model stays the policy.
            step = m_step(rd, t, base, sft, trainer, free_memory=samplers.make_room_for_training)
            policy = Policy(base if step.skipped else step.checkpoint, samplers)
            evaluate_all(t, policy)
    finally:
        samplers.close()
        sets.close()
    return rd.root / "report.md"
