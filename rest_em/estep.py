"""E-step: sample solutions from the current policy and score each with the binary verifier.

    samplers = PolicySamplers(cfg)            # one sampler per model path, reused across stages
    verifier = LazyVerifier(cfg.verifier, task.domain)
    e_step(rd, iteration, samplers.get(policy_path), task.train, prompts, cfg.sampling, verifier)

Outputs (each written atomically, then its stage marker):
``iter_NN/samples.jsonl``  {problem_id, sample_idx, iteration, text, finish_reason, num_tokens}
``iter_NN/verdicts.jsonl`` {problem_id, sample_idx, verdict, reason}
The sampling helpers here are shared with the evaluation, which samples and verifies the same way.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rest_em.config import Config, SamplingSection, VerifierSection
from rest_em.rundir import RunDir
from rest_em.tasks.base import Problem
from verifiers.io import InputError, read_jsonl, write_jsonl_atomic
from verifiers.verdict import Verdict

logger = logging.getLogger(__name__)

SamplerFn = Callable[[], Any]  # returns a rest_em.sampling.Sampler, created on first call


class PolicySamplers:
    """Keeps one sampler alive for the model most recently asked for (the eval of iteration t and the
    E-step of t+1 share the checkpoint of t); asking for another model closes the old sampler."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._path: str | None = None
        self._sampler: Any = None

    def get(self, model_path: str | Path) -> SamplerFn:
        def make() -> Any:
            if self._path != str(model_path):
                self.close()
                from rest_em.sampling import make_sampler

                s = self.cfg.sampling
                options = dict(dtype=self.cfg.model.dtype, batch_size=s.batch_size,
                               tensor_parallel_size=s.tensor_parallel_size, data_parallel_size=s.data_parallel_size,
                               enable_prefix_caching=s.enable_prefix_caching,
                               gpu_memory_utilization=s.gpu_memory_utilization, enforce_eager=s.enforce_eager)
                if s.max_model_len is not None:
                    options["max_model_len"] = s.max_model_len
                logger.info("loading sampler for %s", model_path)
                self._sampler = make_sampler(str(model_path), backend=s.backend, **options)
                self._path = str(model_path)
            return self._sampler

        return make

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        self._sampler, self._path = None, None


class LazyVerifier:
    """The verifier, started on first use: remote when ``verifier.url`` is set, in-process otherwise."""

    def __init__(self, section: VerifierSection, domain: str) -> None:
        self.section, self.domain = section, domain
        self._verifier: Any = None

    def get(self) -> Any:
        if self._verifier is None:
            s = self.section
            if s.url:
                from verifiers.client import RemoteVerifier

                token = os.environ.get(s.token_env) if s.token_env else None
                self._verifier = RemoteVerifier(s.url, self.domain, token=token)
            else:
                from verifiers.registry import get_verifier

                self._verifier = get_verifier(self.domain, timeout_s=s.timeout_s, workers=s.workers)
        return self._verifier

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.close()
        self._verifier = None


def sample_params(section: SamplingSection, extra_stop: Sequence[str] = (), iteration: int = 0) -> Any:
    from rest_em.sampling.params import SampleParams

    # A different seed per iteration: the same seed on a similar policy would repeat its samples.
    return SampleParams(n=section.n, temperature=section.temperature, top_k=section.top_k, top_p=section.top_p,
                        max_tokens=section.max_tokens, seed=section.seed + 1000 * iteration,
                        stop=tuple(dict.fromkeys([*section.stop, *extra_stop])))


def generate_rows(
    sampler: Any, problems: Sequence[Problem], prompts: Mapping[str, str], params: Any, iteration: int,
    desc: str, extra: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample ``params.n`` completions per problem; rows in problem order, then sample order."""
    start = time.monotonic()
    outs = sampler.generate([prompts[p.problem_id] for p in problems], params, desc=desc)
    seconds = time.monotonic() - start
    rows = []
    for p, completions in zip(problems, outs, strict=True):
        for idx, c in enumerate(completions):
            rows.append({"problem_id": p.problem_id, "sample_idx": idx, "iteration": iteration, **(extra or {}),
                         "text": c.text, "finish_reason": c.finish_reason, "num_tokens": c.num_tokens})
    tokens = sum(r["num_tokens"] for r in rows)
    stats = {"seconds": seconds, "num_samples": len(rows), "tokens": tokens,
             "tokens_per_s": tokens / seconds if seconds > 0 else None, "backend": getattr(sampler, "backend", None)}
    return rows, stats


def verify_rows(verifier: Any, problems: Mapping[str, Problem], rows: Sequence[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One verdict row per sample row (same order). A row the verifier rejects is an ``error`` verdict."""
    items, slots, verdicts = [], [], [None] * len(rows)
    for i, row in enumerate(rows):
        try:
            problem = problems[row["problem_id"]]
            items.append(verifier.parse_item(problem.verifier_row(row["text"], row["sample_idx"]), where=f"{where}:{i + 1}"))
            slots.append(i)
        except (InputError, KeyError) as exc:
            logger.error("cannot verify %s row %d: %s", where, i + 1, exc)
            verdicts[i] = Verdict.errored("bad_item", str(exc))
    for i, v in zip(slots, verifier.verify_batch(items) if items else [], strict=True):
        verdicts[i] = v
    keys = ("problem_id", "sample_idx", "mode")
    return [{**{k: r[k] for k in keys if k in r}, "verdict": v.outcome.value, "reason": v.reason}
            for r, v in zip(rows, verdicts)]


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl(path)]


def e_step(
    rd: RunDir, iteration: int, sampler: SamplerFn, problems: Sequence[Problem], prompts: Mapping[str, str],
    section: SamplingSection, extra_stop: Sequence[str], verifier: LazyVerifier,
) -> None:
    """Sample ``section.n`` solutions per train problem from the current policy, then verify them."""
    out = rd.iter_dir(iteration)
    if not rd.done(iteration, "samples"):
        params = sample_params(section, extra_stop, iteration)
        rows, stats = generate_rows(sampler(), problems, prompts, params, iteration, f"E-step {iteration} sampling")
        write_jsonl_atomic(out / "samples.jsonl", rows)
        rd.mark(iteration, "samples", stats)
        logger.info("E-step %d: %d samples in %.0f s", iteration, len(rows), stats["seconds"])
    if not rd.done(iteration, "verdicts"):
        start = time.monotonic()
        rows = read_rows(out / "samples.jsonl")
        by_id = {p.problem_id: p for p in problems}
        verdicts = verify_rows(verifier.get(), by_id, rows, str(out / "samples.jsonl"))
        write_jsonl_atomic(out / "verdicts.jsonl", verdicts)
        counts = {o: sum(v["verdict"] == o for v in verdicts) for o in ("pass", "fail", "error")}
        rd.mark(iteration, "verdicts", {"seconds": time.monotonic() - start, "counts": counts})
        logger.info("E-step %d verdicts: %s", iteration, counts)
