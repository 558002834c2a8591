"""ReST-EM (Singh et al. 2023) and its relatives, the whole loop: one driver for every algorithm. Run it with
``rest-em iterate --config ...``.

    iteration 0: evaluate the base model (the baseline row)
    iteration t: improve  the algorithm's improvement step from the policy of t-1. Offline (ReST-EM):
                          E-step  sample cfg.sampling.n solutions per train problem, score each with the
                                  binary verifier
                          dataset drop errors, dedupe, keep at most cfg.filter.cap correct solutions per
                                  problem (or the algorithm's own rows)
                          M-step  fine-tune the BASE model (never the previous iterate; cfg.mstep.init) on them
                          Online (GRPO): a segment of training steps.
                 evaluate the new policy on each held-out set (test, transfer); rewrite the report

``cfg.algorithm`` picks the hooks of rest_em/algorithms/ (docs/architecture.md). Every stage is skipped
when its completion marker exists, so re-running the same command resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rest_em.algorithms import make_algorithm
from rest_em.config import Config
from rest_em.evaluation import evaluate
from rest_em.policy import Policy, Samplers
from rest_em.problem_sets import build_problem_sets
from rest_em.processes import driver_start
from rest_em.report import write_report
from rest_em.rundir import RunDir
from rest_em.training.launch import refuse_under_launcher
from rest_em.training.tracking import log_eval_metrics

logger = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Run (or resume) the algorithm's iterations; returns the path of report.md."""
    refuse_under_launcher()  # one driver process; only the M-step runs under a launcher (training.launcher)
    for warning in cfg.warnings():
        logger.warning("config: %s", warning)
    rd = RunDir.open(cfg)
    driver_start(rd.root, cfg)  # signal handlers, second-driver guard, leftovers of a killed run stopped, watchdog, GPU plan
    base = cfg.model_path()
    sets, samplers = build_problem_sets(cfg, base), Samplers(cfg)
    algo = make_algorithm(cfg, rd, base)

    def evaluate_all(t: int, policy: Policy) -> None:
        for test in sets.evals:
            log_eval_metrics(rd.root, t, test.name, evaluate(rd, t, algo.condition(policy), test, cfg.eval, cfg.verifier), cfg.training.report_to)
        write_report(rd.root)

    try:
        algo.check(sets)
        policy = Policy(base, samplers)
        evaluate_all(0, policy)
        for t in range(1, algo.iterations() + 1):
            policy = algo.improve(t, policy, sets)
            evaluate_all(t, policy)
    finally:
        samplers.close()
        sets.close()
    return rd.root / "report.md"
