"""ReST-EM (Singh et al. 2023) and its relatives, the whole loop. Run it with ``rest-em iterate --config ...``.

    iteration 0: evaluate the base model (the baseline row)
    iteration t: E-step  sample cfg.sampling.n solutions per train problem from the policy of t-1,
                         score each with the binary verifier
                 dataset drop errors, dedupe, keep at most cfg.filter.cap correct solutions per problem
                         (ReST-EM), or the rows of cfg.algorithm (rest_em/algorithms/)
                 M-step  fine-tune the BASE model (never the previous iterate; cfg.mstep.init) on them
                 evaluate the new policy on each held-out set (test, transfer); rewrite the report

``cfg.algorithm`` picks the hooks of rest_em/algorithms/ (what the M-step trains on, with which trainer,
from where, and how prompts are conditioned); online algorithms (grpo) run their own loop.
Every stage is skipped when its completion marker exists, so re-running the same command resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rest_em.algorithms import make_algorithm, online_runner
from rest_em.config import Config
from rest_em.estep import e_step
from rest_em.evaluation import evaluate
from rest_em.mstep import m_step
from rest_em.policy import Policy, Samplers
from rest_em.problem_sets import build_problem_sets
from rest_em.processes import driver_start
from rest_em.report import write_report
from rest_em.rundir import RunDir
from rest_em.training.launch import refuse_under_launcher

logger = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Run (or resume) ``cfg.iterations`` iterations; returns the path of report.md."""
    refuse_under_launcher()  # one driver process; only the M-step runs under a launcher (training.launcher)
    online = online_runner(cfg.algorithm)
    if online is not None:
        return online(cfg)
    for warning in cfg.warnings():
        logger.warning("config: %s", warning)
    rd = RunDir.open(cfg)
    driver_start(rd.root, cfg)  # signal handlers, second-driver guard, leftovers of a killed run stopped, watchdog, GPU plan
    base = cfg.model_path()
    sets, samplers = build_problem_sets(cfg, base), Samplers(cfg)
    algo = make_algorithm(cfg, rd, base)
    trainer = algo.trainer()

    def evaluate_all(t: int, policy: Policy) -> None:
        for test in sets.evals:
            evaluate(rd, t, algo.condition(policy), test, cfg.eval, cfg.verifier)
        write_report(rd.root)

    try:
        algo.check(sets)
        policy = Policy(base, samplers)
        evaluate_all(0, policy)
        for t in range(1, cfg.iterations + 1):
            # E-step: sample from the policy of iteration t-1 and verify every sample.
            e_step(rd, t, algo.condition(policy), sets.train, cfg.sampling, cfg.verifier)
            rows = algo.train_set(t, sets.train)
            # M-step from the algorithm's start (ReST-EM: the base model); with nothing to train on, the start
            # stays the policy.
            init = algo.init(t, policy, free_memory=samplers.make_room_for_training)
            step = m_step(rd, t, init, rows, trainer, free_memory=samplers.make_room_for_training, empty_reason=algo.empty_reason)
            policy = Policy(init if step.skipped else step.checkpoint, samplers)
            evaluate_all(t, policy)
    finally:
        samplers.close()
        sets.close()
    return rd.root / "report.md"
