"""A TRL reward function backed by the rest-em verifiers (GRPOTrainer, RLOOTrainer, ...).

    from verifiers.integrations.trl import trl_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[trl_reward("math")], train_dataset=ds)            # in-process
    trainer = GRPOTrainer(model=..., reward_funcs=[trl_reward("code", url="http://10.0.0.5:8000")], ...)  # a service

TRL calls a reward function with ``prompts``, ``completions`` and every other dataset column as a keyword
argument (one value per completion). The reference comes from the ``label`` column (the same convention as
OpenRLHF's ``/get_reward`` labels: a math answer, or a JSON object with ``domain``, ``reference`` and, for
code, ``tests``), or, without one, from the columns ``reference`` / ``reference_format`` / ``response_format``
(math) and ``tests`` (code).

Rewards: ``1.0`` pass, ``0.0`` fail, ``None`` for an ``error`` verdict. TRL (1.16) turns ``None`` into NaN,
leaves it out of the group's mean and std and gives that completion no advantage, so a broken verifier
never teaches the model anything. The share of errors is logged as ``rest_em/verifier_error_rate`` through
TRL's ``log_metric`` (when the trainer passes it).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from verifiers.integrations.common import ITEM_COLUMNS, Scorer, row_for, verdicts_for
from verifiers.verdict import Outcome, Verdict

__all__ = ["TRLReward", "trl_reward", "completion_text"]

logger = logging.getLogger(__name__)

# Keyword arguments TRL adds that are not dataset columns.
_TRL_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def completion_text(completion: Any) -> str:
    """A completion as text: a plain string, or the content of a conversational completion's messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal blocks: keep the text ones
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            parts.append(str(content))
        return "".join(parts)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


class TRLReward:
    """Callable as TRL's reward function; ``__name__`` names its column in TRL's logs."""

    def __init__(self, domain: str = "math", url: str | None = None, *, token: str | None = None,
                 label_column: str = "label", verifier_options: dict[str, Any] | None = None,
                 name: str | None = None, **client_options: Any) -> None:
        self.domain = domain
        self.label_column = label_column
        self.scorer = Scorer(url=url, token=token,
                             verifier_options={domain: verifier_options} if verifier_options else None, **client_options)
        self.__name__ = name or f"rest_em_{domain}"
        self.last_verdicts: list[Verdict] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS}
        labels = columns.get(self.label_column)
        item_columns = {k: columns[k] for k in ITEM_COLUMNS if k in columns}
        if labels is None and not item_columns:
            raise ValueError(
                f"{self.__name__}: the dataset has no {self.label_column!r} column and none of {', '.join(ITEM_COLUMNS)}; "
                f"columns given: {', '.join(sorted(columns)) or 'none'}")
        prepared = []
        for i, completion in enumerate(completions):
            label = labels[i] if labels is not None else None
            prepared.append(row_for(i, completion_text(completion), label,
                                    {k: v[i] for k, v in item_columns.items()}, self.domain))
        verdicts = verdicts_for(self.scorer, prepared)
        self.last_verdicts = verdicts
        errors = [v for v in verdicts if v.outcome is Outcome.ERROR]
        if errors:
            logger.warning("%s: %d of %d completions got an `error` verdict (no reward); first: %s: %s",
                           self.__name__, len(errors), len(verdicts), errors[0].reason, errors[0].message[:300])
        if callable(log_metric) and verdicts:
            log_metric("rest_em/verifier_error_rate", len(errors) / len(verdicts))
        return [None if v.outcome is Outcome.ERROR else (1.0 if v.outcome is Outcome.PASS else 0.0) for v in verdicts]

    def close(self) -> None:
        self.scorer.close()


def trl_reward(domain: str = "math", url: str | None = None, **options: Any) -> TRLReward:
    """A TRL reward function: the ``domain`` verifier in this process, or the service at ``url``.

    ``options``: ``token`` (default ``REST_EM_VERIFIER_TOKEN``), ``label_column`` (default ``label``),
    ``verifier_options`` (in-process: the domain verifier's options, e.g. ``{"timeout_s": 5}``), ``name``,
    and the client's options (``max_batch``, ``retries``, ...) for a URL."""
    return TRLReward(domain, url, **options)
