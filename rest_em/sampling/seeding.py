"""Per-problem seeding: every problem's samples depend on (seed, problem_id) only, not on its batch.

    outs = generate_per_problem(sampler, prompts, problem_ids, params)

The default E-step seeds a sampler once per call (``SampleParams.seed``), so a problem's samples depend
on which other prompts share the call. Split the problems into shards, and that changes. In the
per-problem mode (``sampling.seeding: problem``, always on for ``sampling.backend: ray``) each problem
is sampled with its own seed ``problem_seed(seed, problem_id)``, so a run sharded over any number of
engines returns the same rows as an unsharded one in that mode (text-identical with the deterministic
transformers backend; with vLLM, a per-request seed is vLLM's own per-request generator).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from rest_em.sampling.params import Completion, SampleParams

SEEDING_MODES = ("batch", "problem")


def problem_seed(seed: int | None, problem_id: str) -> int:
    """A 63-bit seed from the call's seed and the problem id (stable across processes and machines)."""
    digest = hashlib.sha256(f"{seed}\x00{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seeded(params: SampleParams, problem_id: str) -> SampleParams:
    return dataclasses.replace(params, seed=problem_seed(params.seed, problem_id))


def generate_per_problem(sampler: Any, prompts: Sequence[str], keys: Sequence[str], params: SampleParams,
                         desc: str = "sampling") -> list[list[Completion]]:
    """``sampler.generate`` with each prompt seeded by its key: one request per prompt, batched by vLLM."""
    if len(prompts) != len(keys):
        raise ValueError(f"{len(prompts)} prompts but {len(keys)} keys")
    engine = getattr(getattr(sampler, "_engine", None), "llm", None)
    if getattr(sampler, "backend", None) == "vllm" and engine is not None:
        from rest_em.sampling.vllm_backend import sampling_params, to_completions

        each = [seeded(params, k) for k in keys]
        outputs = engine.generate(list(prompts), [sampling_params(p) for p in each], use_tqdm=False)
        return [to_completions(o, p) for o, p in zip(outputs, each, strict=True)]
    # transformers (and any sampler without per-request seeds): one call per problem, so its draws are its own.
    return [sampler.generate([prompt], seeded(params, key), desc=f"{desc} [{i + 1}/{len(prompts)}]")[0]
            for i, (prompt, key) in enumerate(zip(prompts, keys))]
