"""Held-out evaluation of one policy: greedy pass@1, and pass@k / maj@k from sampled solutions.

    evaluate(rd, iteration, sampler, task.test, prompts, cfg.eval, stop, verifier, domain, name="eval")

Writes ``iter_NN/<name>/{samples.jsonl, verdicts.jsonl, metrics.json}``. Sample and verdict rows
carry ``mode``: ``greedy`` (temperature 0, ``sample_idx`` 0) or ``sampled`` (``eval.n`` samples at
``eval.temperature`` / ``eval.top_p``). Each of the three files is a resumable stage.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Mapping, Sequence

from rest_em.config import EvalSection
from rest_em.estep import LazyVerifier, SamplerFn, generate_rows, read_rows, verify_rows
from rest_em.metrics import EvalRecord, compute_metrics, reason_counts
from rest_em.rundir import RunDir
from rest_em.tasks.base import Problem
from verifiers.io import write_jsonl_atomic, write_text_atomic

logger = logging.getLogger(__name__)


def eval_params(section: EvalSection, stop: Sequence[str], iteration: int) -> list[tuple[str, Any]]:
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


def check_eval_section(section: EvalSection) -> None:
    """k values and maj_k must fit the number of samples (pass@k needs n >= k)."""
    too_big = [k for k in section.k_list if k > section.n or k < 1]
    if too_big:
        raise ValueError(f"eval.k_list {section.k_list}: every k must be between 1 and eval.n={section.n}")
    if section.maj_k and section.maj_k > section.n:
        raise ValueError(f"eval.maj_k={section.maj_k} exceeds eval.n={section.n}")


def evaluate(
    rd: RunDir, iteration: int, sampler: SamplerFn, problems: Sequence[Problem], prompts: Mapping[str, str],
    section: EvalSection, stop: Sequence[str], verifier: LazyVerifier, domain: str, name: str = "eval",
) -> dict[str, Any]:
    """Run (or resume) the evaluation of the policy behind ``sampler``; returns metrics.json's content."""
    out = rd.iter_dir(iteration) / name
    if not rd.done(iteration, f"{name}_samples"):
        rows, stats = [], {"seconds": 0.0, "tokens": 0, "num_samples": 0}
        for mode, params in eval_params(section, stop, iteration):
            mode_rows, s = generate_rows(sampler(), problems, prompts, params, iteration,
                                         f"{name} {iteration} {mode}", extra={"mode": mode})
            rows += mode_rows
            stats = {k: stats[k] + s[k] for k in ("seconds", "tokens", "num_samples")} | {"backend": s["backend"]}
        stats["tokens_per_s"] = stats["tokens"] / stats["seconds"] if stats["seconds"] > 0 else None
        write_jsonl_atomic(out / "samples.jsonl", rows)
        rd.mark(iteration, f"{name}_samples", stats)
    if not rd.done(iteration, f"{name}_verdicts"):
        start = time.monotonic()
        rows = read_rows(out / "samples.jsonl")
        verdicts = verify_rows(verifier.get(), {p.problem_id: p for p in problems}, rows, str(out / "samples.jsonl"))
        if domain == "math":
            from verifiers.math import extract_answer

            for row, v in zip(rows, verdicts, strict=True):
                v["answer"] = extract_answer(row["text"])
        write_jsonl_atomic(out / "verdicts.jsonl", verdicts)
        rd.mark(iteration, f"{name}_verdicts", {"seconds": time.monotonic() - start})
    if not rd.done(iteration, name):
        start = time.monotonic()
        verdict_rows = read_rows(out / "verdicts.jsonl")
        records = eval_records(problems, verdict_rows)
        maj_k = section.maj_k if domain == "math" and section.maj_k else None
        equivalent = getattr(verifier.get(), "equivalent_batch", None) if maj_k else None
        if maj_k and equivalent is None:
            logger.warning("the verifier cannot compare answers: maj@%d groups identical answer strings only", maj_k)
        metrics = compute_metrics(records, section.k_list if section.n else [], maj_k, equivalent)
        metrics["iteration"] = iteration
        metrics["reasons"] = reason_counts(verdict_rows)  # issue #6: why samples failed (wrong_answer, timeout, ...)
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))
        rd.mark(iteration, name, {"seconds": time.monotonic() - start})
        logger.info("%s %d: %s", name, iteration, {k: v for k, v in metrics.items() if "@" in k})
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def eval_records(problems: Sequence[Problem], verdicts: Sequence[Mapping[str, Any]]) -> list[EvalRecord]:
    records = {p.problem_id: EvalRecord(p.problem_id, p.level) for p in problems}
    for v in sorted(verdicts, key=lambda v: (v["mode"], v["sample_idx"])):
        r = records[v["problem_id"]]
        if v["mode"] == "greedy":
            r.greedy = v["verdict"]
        else:
            r.samples.append((v["verdict"], v.get("answer")))
    return list(records.values())
