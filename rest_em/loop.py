"""ReST-EM (Singh et al. 2023), the whole loop. Run it with ``rest-em iterate --config ...``.

    iteration 0: evaluate the base model (the baseline row)
    iteration t: E-step  sample cfg.sampling.n solutions per train problem from the policy of t-1,
                         score each with the binary verifier
                 filter  drop errors, dedupe, keep at most cfg.filter.cap correct solutions per problem
                 M-step  fine-tune the BASE model (never the previous iterate) on them
                 evaluate the new policy on the test (and transfer) problems; rewrite the report

Every stage is skipped when its completion marker exists, so re-running the same command resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rest_em.config import Config
from rest_em.estep import LazyVerifier, PolicySamplers, e_step
from rest_em.evaluation import check_eval_section, evaluate
from rest_em.mstep import filter_stage, m_step
from rest_em.prompts import make_prompt_format
from rest_em.report import write_report
from rest_em.rundir import RunDir
from rest_em.tasks import load_task, load_transfer
from rest_em.tasks.base import select

logger = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Run (or resume) ``cfg.iterations`` ReST-EM iterations; returns the path of report.md."""
    check_eval_section(cfg.eval)
    rd = RunDir.open(cfg)
    base = cfg.model_path()
    task, transfer = load_task(cfg.task), load_transfer(cfg.task)
    fmt = make_prompt_format(str(base), cfg.model.prompt_style, task)
    test = select(task.test, cfg.eval.num_problems, cfg.task.seed)
    prompts = {p.problem_id: fmt.render(p) for p in [*task.train, *test]}
    if transfer is not None:
        tfmt = make_prompt_format(str(base), cfg.model.prompt_style, transfer)
        tprompts = {p.problem_id: tfmt.render(p) for p in transfer.test}
    samplers, verifier = PolicySamplers(cfg), LazyVerifier(cfg.verifier, task.domain)
    tverifier = verifier if transfer is None or transfer.domain == task.domain else LazyVerifier(cfg.verifier, transfer.domain)

    def evaluate_policy(t: int, policy: Path) -> None:
        evaluate(rd, t, samplers.get(policy), test, prompts, cfg.eval, fmt.stop, verifier, task.domain)
        if transfer is not None:
            evaluate(rd, t, samplers.get(policy), transfer.test, tprompts, cfg.eval, tfmt.stop, tverifier,
                     transfer.domain, name="transfer")
        write_report(rd.root)

    try:
        policy = base
        evaluate_policy(0, policy)
        for t in range(1, cfg.iterations + 1):
            # E-step: sample from the policy of iteration t-1 and verify every sample.
            e_step(rd, t, samplers.get(policy), task.train, prompts, cfg.sampling, fmt.stop, verifier)
            sft = filter_stage(rd, t, prompts, cfg.filter)
            # M-step: always from the base model. Nothing correct to train on -> the base model stays.
            policy = m_step(rd, t, base, sft, cfg.training, free_memory=samplers.close) or base
            evaluate_policy(t, policy)
    finally:
        samplers.close()
        verifier.close()
        tverifier.close()
    return rd.root / "report.md"
