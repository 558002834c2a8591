"""Held-out evaluation of one policy: greedy pass@1, and pass@k / maj@k from sampled solutions.

    metrics = evaluate(rd, iteration, policy, test_set, cfg.eval, cfg.verifier)

Writes ``iter_NN/<set name>/{samples.jsonl, verdicts.jsonl, metrics.json}`` (``eval/``, ``transfer/``).
Sample and verdict rows carry ``mode``: ``greedy`` (temperature 0, ``sample_idx`` 0) or ``sampled``
(``eval.n`` samples at ``eval.temperature`` / ``eval.top_p``). Each of the three files is a resumable
stage (``<name>_samples``, ``<name>_verdicts``, ``<name>``).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from rest_em.config import EvalSection, MathVerifierSection, VerifierSection
from rest_em.generation import add_stats, generate_rows
from rest_em.metrics import EvalRecord, compute_metrics, reason_counts
from rest_em.policy import Policy
from rest_em.problem_sets import ProblemSet
from rest_em.rundir import RunDir
from rest_em.tasks.base import Problem
from rest_em.verification import verdict_stage

logger = logging.getLogger(__name__)


def eval_params(section: EvalSection, stop: Sequence[str]) -> list[tuple[str, Any]]:
    from rest_em.sampling.params import SampleParams

    modes = []
    if section.greedy:
        modes.append(("greedy", SampleParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_tokens=section.max_tokens,
                                             seed=section.seed, stop=tuple(stop))))
    if section.n > 0:
        # The same seed every iteration: differences between rows come from the policy, not the dice.
        modes.append(("sampled", SampleParams(n=section.n, temperature=section.temperature, top_k=section.top_k,
                                              top_p=section.top_p, max_tokens=section.max_tokens,
                                              seed=section.seed, stop=tuple(stop))))
    return modes


def answer_reader(section: MathVerifierSection) -> Callable[[str], str | None]:
    """The final answer of a response, read as the math verifier is configured to read it."""
    from verifiers.math.extract import DEFAULT_POLICIES, extract_answer, read_whole_answer

    if section.response_format == "answer":
        return read_whole_answer
    policies = tuple(section.extraction_policies) if section.extraction_policies is not None else DEFAULT_POLICIES
    return lambda text: extract_answer(text, policies)


def add_answers(section: MathVerifierSection, samples: Sequence[Mapping[str, Any]], verdicts: Sequence[dict[str, Any]]) -> None:
    """Math verdict rows carry the extracted final answer (maj@k votes on it); an answer a custom verifier
    reported is kept."""
    read = answer_reader(section)
    for row, v in zip(samples, verdicts, strict=True):
        if v.get("answer") is None:
            v["answer"] = read(row["text"])


def evaluate(rd: RunDir, iteration: int, policy: Policy, test: ProblemSet, section: EvalSection,
             verifier: VerifierSection) -> dict[str, Any]:
    """Run (or resume) the evaluation of ``policy`` on ``test``; returns metrics.json's content."""
    name = test.name

    def sample() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        stats: dict[str, Any] = {"seconds": 0.0, "tokens": 0, "num_samples": 0}
        for mode, params in eval_params(section, test.stop):
            mode_rows, s = generate_rows(policy.sampler(), test, params, iteration, f"{name} {iteration} {mode}",
                                         extra={"mode": mode}, shard_dir=rd.iter_dir(iteration) / "shards" / f"{name}-{mode}")
            rows += mode_rows
            stats = add_stats(stats, s)
        return rows, stats

    samples = rd.stage_rows(iteration, f"{name}_samples", f"{name}/samples.jsonl", sample)
    verdicts = verdict_stage(rd, iteration, f"{name}_verdicts", f"{name}/verdicts.jsonl", samples, test,
                             verifier.max_error_rate, annotate=partial(add_answers, verifier.math) if test.domain == "math" else None)

    code_maj = test.domain == "code" and section.n > 0 and section.maj_k > 0
    if code_maj:  # maj@k for code: programs vote by their outputs on the problem's inputs (rest_em/behaviour.py)
        from rest_em.behaviour import add_behaviour_answers, behaviour_stage, votes_by_behaviour

        code_maj = votes_by_behaviour(test)
        if code_maj:
            behaviour = behaviour_stage(rd, iteration, test, samples, verdicts, section.maj_k)
        else:
            logger.warning("%s: no maj@%d: its tests have no inputs of their own to run programs on (humaneval or "
                           "assert tests)", name, section.maj_k)

    def score() -> tuple[dict[str, Any], dict[str, Any]]:
        start = time.monotonic()
        maj_k = section.maj_k if (test.domain == "math" or code_maj) and section.maj_k else None
        votes = verdicts
        if code_maj:
            from rest_em.behaviour import INPUTS

            votes = add_behaviour_answers(verdicts, behaviour)
            equivalent = None  # the same outputs on every input: one group
        else:
            equivalent = getattr(test.verifier.get(), "equivalent_batch", None) if maj_k else None
            if maj_k and equivalent is None:
                logger.warning("the verifier cannot compare answers: maj@%d groups identical answer strings only", maj_k)
        metrics = compute_metrics(eval_records(test.problems, votes), section.k_list if section.n else [], maj_k,
                                  equivalent)
        if code_maj:
            metrics["maj_by"] = f"behaviour: programs grouped by their outputs on {INPUTS}"
        metrics["iteration"] = iteration
        metrics["reasons"] = reason_counts(verdicts)  # why samples failed (wrong_answer, timeout, ...)
        logger.info("%s %d: %s", name, iteration, {k: v for k, v in metrics.items() if "@" in k})
        return metrics, {"seconds": time.monotonic() - start}

    return rd.stage_json(iteration, name, f"{name}/metrics.json", score)


def eval_records(problems: Sequence[Problem], verdicts: Sequence[Mapping[str, Any]]) -> list[EvalRecord]:
    records = {p.problem_id: EvalRecord(p.problem_id, p.level) for p in problems}
    for v in sorted(verdicts, key=lambda v: (v["mode"], v["sample_idx"])):
        r = records[v["problem_id"]]
        if v["mode"] == "greedy":
            r.greedy = v["verdict"]
        else:
            r.samples.append((v["verdict"], v.get("answer")))
    return list(records.values())
