"""Return-conditioned RL (RCRL; Chen et al. 2021 "Decision Transformer", Brandfonbrener et al. 2022; for
reasoning as in Havrilla et al. 2024 §3): supervised learning on ALL verified samples, each prefixed with
a token for its return, then sampling conditioned on the high return.

- Two reward tokens, ``<|reward_correct|>`` and ``<|reward_incorrect|>``, are real added special tokens:
  the M-step adds them to the tokenizer and resizes the embeddings (new rows = the mean embedding) in a
  copy of the base model (``<run>/rcrl_base``, made once), so every checkpoint carries them.
- Training rows: ``prompt + <token of the sample's verdict>`` -> the sample's text (``error`` verdicts
  are dropped, duplicates within a problem and verdict too when ``filter.dedupe``).
- Sampling and evaluation: a policy whose tokenizer has the tokens gets ``<|reward_correct|>`` after
  every prompt. The base model (iteration 0 and the first E-step) has no such token and is sampled as is.
- The tokens never reach a verifier or a report: completions are decoded without special tokens and any
  reward-token text left in them is stripped before they are written or verified.
"""

from __future__ import annotations

import functools
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rest_em import training
from rest_em.algorithms.base import Algorithm, Rows
from rest_em.config import ConfigError
from rest_em.fields import opt
from rest_em.policy import Policy
from rest_em.training import TrainConfig, TrainResult
from rest_em.training.launch import make_trainer

if TYPE_CHECKING:
    from rest_em.problem_sets import ProblemSet, ProblemSets
    from rest_em.verification import VerifiedSample

logger = logging.getLogger(__name__)

@dataclass
class RCRLSection:
    incorrect_per_problem: int | None = opt(
        None, "rcrl: most incorrect samples kept per problem, a seeded choice (`filter.seed`; `null` = all, as RCRL "
        "trains on every sample); a small number balances the two reward tokens and bounds the M-step's cost")

    def __post_init__(self) -> None:
        if self.incorrect_per_problem is not None and self.incorrect_per_problem < 0:
            raise ValueError(f"rcrl.incorrect_per_problem must be >= 0, got {self.incorrect_per_problem}")


CORRECT = "<|reward_correct|>"
INCORRECT = "<|reward_incorrect|>"
REWARD_TOKENS = (CORRECT, INCORRECT)


def strip_reward_tokens(text: str) -> str:
    for token in REWARD_TOKENS:
        text = text.replace(token, "")
    return text


@functools.lru_cache(maxsize=64)
def _has_reward_tokens(path: str, mtime: float) -> bool:
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    return all(t in vocab for t in REWARD_TOKENS)


def has_reward_tokens(path: str | Path) -> bool:
    """Whether the tokenizer at ``path`` has both reward tokens (cached while its files are unchanged)."""
    p = Path(path)
    marker = p / "tokenizer_config.json"
    return _has_reward_tokens(str(p), marker.stat().st_mtime if marker.exists() else 0.0)


def add_reward_tokens(src: Path, dst: Path) -> Path:
    """``dst``: the model at ``src`` with the reward tokens added as special tokens and the embeddings resized
    (written to a temporary sibling and renamed, so a kill never leaves half a model). Made once."""
    if (dst / "config.json").exists() and has_reward_tokens(dst):
        return dst
    import torch
    from transformers import AddedToken, AutoModelForCausalLM, AutoTokenizer

    tmp = dst.with_name(f".{dst.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    added = tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in REWARD_TOKENS],
                                 special_tokens=True)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    logger.info("RCRL: added %d reward tokens to %s -> %s (vocabulary %d)", added, src, dst, len(tokenizer))
    return dst


@dataclass(frozen=True)
class RCRLTrainer:
    """SFT from a copy of the start model that has the reward tokens (``work_dir/rcrl_base`` for the base), in
    this process or as a launched job (``training.launcher``), like ReST-EM's M-step."""

    config: TrainConfig
    work_dir: Path

    def train(self, init: Path, rows: Sequence[dict[str, Any]], output_dir: Path) -> TrainResult:
        start = Path(init) if has_reward_tokens(init) else add_reward_tokens(Path(init), self.work_dir / "rcrl_base")
        if self.config.lora.enabled:  # the reward tokens' embedding rows train beside the adapter (in this process)
            return training.train(str(start), list(rows), self.config, str(output_dir), trainable_tokens=REWARD_TOKENS)
        return make_trainer(self.config).train(start, list(rows), Path(output_dir))


class _ConditionedSampler:
    """A sampler that appends ``suffix`` to every prompt and strips reward tokens from every completion."""

    def __init__(self, inner: Any, suffix: str) -> None:
        self.inner, self.suffix = inner, suffix
        self.backend = getattr(inner, "backend", None)

    def generate(self, prompts: Sequence[str], params: Any, desc: str = "sampling") -> list:
        from dataclasses import replace

        outs = self.inner.generate([p + self.suffix for p in prompts], params, desc=desc)
        return [[replace(c, text=strip_reward_tokens(c.text)) for c in comps] for comps in outs]

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class ConditionedPolicy(Policy):
    """A policy sampled with ``suffix`` after every prompt (RCRL: the correct-reward token)."""

    suffix: str = field(default="")

    def sampler(self) -> Any:
        return _ConditionedSampler(super().sampler(), self.suffix)


class RCRL(Algorithm):
    name = "rcrl"
    source = "return-conditioned RL: Chen et al. 2021 (Decision Transformer); for reasoning, Havrilla et al. 2024"
    Section = RCRLSection
    own_set = True
    unused_keys = {"filter.cap": "RCRL trains on every verified sample; rcrl.incorrect_per_problem bounds the "
                                 "incorrect ones"}

    def check(self, sets: "ProblemSets") -> None:
        t = self.cfg.training
        if t.lora.enabled and t.launcher != "none":
            raise ConfigError("rcrl with training.lora trains the reward tokens' embedding rows beside the adapter in "
                              "the driver process: set training.launcher=none, or train rcrl without LoRA under the "
                              "launcher")

    def condition(self, policy: Policy) -> Policy:
        # The base model has no reward token to condition on; its completions are stripped all the same.
        return ConditionedPolicy(policy.path, policy.samplers, CORRECT if has_reward_tokens(policy.path) else "")

    def trainer(self) -> RCRLTrainer:
        return RCRLTrainer(self.cfg.training, self.rd.root)

    def own_rows(self, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"], sft: Rows
                 ) -> tuple[Rows, dict[str, Any]]:
        rows = reward_rows(verified, train.prompts, self.cfg.filter.dedupe, iteration,
                           self.settings.incorrect_per_problem, self.cfg.filter.seed)
        return rows, {"rows_correct": sum(r["reward"] == "correct" for r in rows),
                      "rows_incorrect": sum(r["reward"] == "incorrect" for r in rows)}


def reward_rows(verified: Sequence["VerifiedSample"], prompts: dict[str, str], dedupe: bool, iteration: int,
                incorrect_per_problem: int | None = None, seed: int = 0) -> Rows:
    """One row per non-error sample: the prompt plus the token of its verdict -> the sample's text (at most
    ``incorrect_per_problem`` incorrect ones per problem, a seeded choice, when it is set)."""
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for s in sorted(verified, key=lambda s: (s.problem_id, s.sample_idx)):
        verdict = s.verdict
        if verdict == "error":
            continue
        text = strip_reward_tokens(s.text)
        key = (s.problem_id, verdict, text.strip())
        if dedupe and key in seen:
            continue
        seen.add(key)
        reward = "correct" if verdict == "pass" else "incorrect"
        rows.append({"problem_id": s.problem_id, "sample_idx": s.sample_idx, "iteration": iteration,
                     "prompt": prompts[s.problem_id] + (CORRECT if verdict == "pass" else INCORRECT),
                     "completion": text, "reward": reward, "source": "sample"})
    if incorrect_per_problem is None:
        return rows
    keep = set()
    for pid in sorted({r["problem_id"] for r in rows}):
        bad = [i for i, r in enumerate(rows) if r["problem_id"] == pid and r["reward"] == "incorrect"]
        keep.update(random.Random(f"{seed}:{iteration}:{pid}").sample(bad, min(incorrect_per_problem, len(bad))))
    return [r for i, r in enumerate(rows) if r["reward"] == "correct" or i in keep]


ALGORITHM = RCRL
