"""Reward functions for TRL's GRPOTrainer made from the binary verifiers.

    reward = VerifierReward(problem_set, max_error_rate=cfg.verifier.max_error_rate)
    GRPOTrainer(..., reward_funcs=[reward], train_dataset=[{"prompt": ..., "problem_id": ...}, ...])

TRL calls the reward function once per generation batch (every completion of the step's groups) with
the dataset's extra columns as keyword lists; the whole batch goes to the verifier in one
``verify_batch`` call (the math worker pool, the code sandbox pool running the programs concurrently,
or the verifier service with ``verifier.url``), so a step waits for about its slowest check, not the
sum. Verdicts become rewards:

``pass``  1.0
``fail``  0.0, or the ``partial_credit`` of its reason (``grpo.partial_credit``, each in [0, 1): e.g.
          ``{"wrong_answer": 0.1}`` rewards an answer the verifier could read but not the right one
          over no readable answer at all -- a format reward, as in open-r1)
``error`` ``None``: TRL's "no reward". GRPOTrainer turns it into NaN, leaves it out of the group's
          mean and std (nanmean/nanstd) and gives the completion advantage 0, so it never moves the
          policy. Errors are counted; a batch whose share of errors exceeds ``max_error_rate`` raises
          :class:`rest_em.verification.VerifierOutage` before the loss is computed, so no step ever
          trains on a broken reward.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from rest_em.sampling.params import truncate_at_stop
from rest_em.verification import VerifierOutage, outage_message, verdict_counts, verify_rows

logger = logging.getLogger(__name__)

REWARDS = {"pass": 1.0, "fail": 0.0}  # "error" has no reward


def reward_of(verdict: str, reason: str = "", partial_credit: Mapping[str, float] | None = None) -> float | None:
    """1.0 for pass, 0.0 for fail (or ``partial_credit[reason]``), None (no reward) for error."""
    if verdict == "error":
        return None
    if verdict == "fail" and partial_credit:
        return float(partial_credit.get(reason, 0.0))
    return REWARDS[verdict]


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string (text prompts) or a list of chat messages (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, Mapping))
    raise TypeError(f"unexpected completion type {type(completion).__name__}")


@dataclass
class RewardBatch:
    """One call of the reward function: the verified rows of a step and what it cost."""

    step: int | None
    rows: list[dict[str, Any]]  # problem_id, sample_idx, text, verdict, reason, reward
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.counts.get("error", 0) / len(self.rows) if self.rows else 0.0


class VerifierReward:
    """A TRL reward function over one problem set's verifier (see the module docstring).

    ``step`` is set by the trainer's callback to the step being computed (it names the rows and the
    outage message); ``drain()`` hands over the batches verified since the last call.
    """

    def __init__(self, problem_set: Any, max_error_rate: float, stop: Sequence[str] | None = None,
                 partial_credit: Mapping[str, float] | None = None) -> None:
        self.problem_set = problem_set
        self.partial_credit = dict(partial_credit or {})
        self.problems = problem_set.by_id()
        self.max_error_rate = max_error_rate
        self.stop = tuple(problem_set.stop if stop is None else stop)
        self.__name__ = f"verifier_{problem_set.domain}"  # TRL names the reward's metrics after it
        self.step: int | None = None
        self.total = {"pass": 0, "fail": 0, "error": 0}
        self._pending: list[RewardBatch] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], problem_id: Sequence[str] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if problem_id is None:
            raise ValueError("the GRPO dataset needs a problem_id column (the reward looks the problem up by it)")
        start = time.monotonic()
        step = self.step
        if step is None and kwargs.get("trainer_state") is not None:
            step = kwargs["trainer_state"].global_step + 1
        seen: dict[str, int] = {}
        rows = []
        for pid, completion in zip(problem_id, completions, strict=True):
            idx = seen[pid] = seen.get(pid, -1) + 1  # the sample's index in its group
            text, _ = truncate_at_stop(completion_text(completion), self.stop)
            rows.append({"problem_id": pid, "sample_idx": idx, "text": text})
        where = f"GRPO step {step}"
        verdicts = verify_rows(self.problem_set.verifier.get(), self.problems, rows, where=where)
        rewards = [reward_of(v["verdict"], v["reason"], self.partial_credit) for v in verdicts]
        counts = verdict_counts(verdicts)
        for k, n in counts.items():
            self.total[k] += n
        out_rows = [{**r, "verdict": v["verdict"], "reason": v["reason"], "reward": rw,
                     **({"message": v["message"]} if "message" in v else {})}
                    for r, v, rw in zip(rows, verdicts, rewards, strict=True)]
        batch = RewardBatch(step, out_rows, time.monotonic() - start, counts)
        self._pending.append(batch)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):  # shown with TRL's own metrics (and in TensorBoard)
            log_metric("verifier/error_rate", batch.error_rate)
            log_metric("verifier/seconds", batch.seconds)
        if counts["error"]:
            logger.warning("%s: %d of %d verdicts are errors (no reward for them)", where, counts["error"], len(rows))
        if rows and batch.error_rate > self.max_error_rate:
            reasons: dict[str, int] = {}
            for v in verdicts:
                if v["verdict"] == "error":
                    reasons[v["reason"]] = reasons.get(v["reason"], 0) + 1
            first = next((v.get("message", "") for v in verdicts if v["verdict"] == "error"), "")
            msg = outage_message(where, counts, reasons, first, self.max_error_rate)
            raise VerifierOutage(msg.replace("The stage is not marked done: rerunning the same command re-verifies "
                                             "only the error rows.",
                                             "Nothing was trained on this step: rerunning the same command resumes "
                                             "from the last checkpoint."))
        return rewards

    def drain(self) -> list[RewardBatch]:
        out, self._pending = self._pending, []
        return out
