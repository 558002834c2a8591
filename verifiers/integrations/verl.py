"""A veRL ``compute_score`` backed by the rest-em verifiers, for ``custom_reward_function.path``.

    custom_reward_function.path=$(python -c "import verifiers.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.url=http://10.0.0.5:8000     # leave out: verifiers in-process

veRL's reward managers call it two ways, both handled:

* ``naive`` / ``dapo`` / ``prime``: ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)``
  per response -> one dict;
* ``batch``: ``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=)`` -> a list of dicts.

``ground_truth`` (``reward_model.ground_truth`` of the dataset row) follows the label convention of
``verifiers.labels``: a math answer, or a JSON object with ``domain``, ``reference`` and, for code, ``tests``.
``extra_info["label"]``, when present, takes precedence (for datasets whose ground truth is kept elsewhere).

Each result is ``{"score", "verifier_pass", "verifier_error"}``: veRL puts the score on the last response
token and logs the other keys as ``reward_extra_info``. veRL has no "no reward" value, so an ``error``
verdict is scored ``error_score`` (default 0.0) **and** counted in ``verifier_error``; once the share of
errors passes ``max_error_rate`` (default 0.0: the first error) ``compute_score`` raises
:class:`VerifierErrorRate`, which stops the step instead of training on made-up rewards. In per-response
calls the share is measured over the last 256 responses (judged from 20 on, unless the limit is 0).

``reward_kwargs`` it takes: ``url``, ``token``, ``domain`` (default ``math``, for plain-string ground
truths), ``max_error_rate``, ``error_score``, ``verifier_options`` (in-process).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from verifiers.integrations.common import ErrorBudget, Scorer, VerifierErrorRate, row_for, verdicts_for
from verifiers.verdict import Outcome, Verdict

__all__ = ["compute_score", "VerifierErrorRate"]

_state_lock = threading.Lock()
_scorers: dict[tuple[Any, ...], Scorer] = {}
_budgets: dict[float, ErrorBudget] = {}


def _scorer(url: str | None, token: str | None, domain: str, verifier_options: dict[str, Any] | None) -> Scorer:
    key = (url, token, domain, repr(sorted((verifier_options or {}).items())))
    with _state_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            scorer = Scorer(url=url, token=token,
                            verifier_options={domain: dict(verifier_options)} if verifier_options else None)
            _scorers[key] = scorer
        return scorer


def _budget(max_error_rate: float) -> ErrorBudget:
    with _state_lock:
        budget = _budgets.get(max_error_rate)
        if budget is None:
            budget = _budgets[max_error_rate] = ErrorBudget(max_error_rate)
        return budget


def _result(verdict: Verdict, error_score: float) -> dict[str, float]:
    score = {Outcome.PASS: 1.0, Outcome.FAIL: 0.0}.get(verdict.outcome, float(error_score))
    return {"score": score, "verifier_pass": float(verdict.outcome is Outcome.PASS),
            "verifier_error": float(verdict.outcome is Outcome.ERROR)}


def _label(ground_truth: Any, extra_info: Any) -> Any:
    if isinstance(extra_info, dict) and extra_info.get("label") is not None:
        return extra_info["label"]
    return ground_truth


def score_batch(solution_strs: Sequence[str], ground_truths: Sequence[Any], extra_infos: Sequence[Any] | None = None,
                *, url: str | None = None, token: str | None = None, domain: str = "math",
                max_error_rate: float = 0.0, error_score: float = 0.0,
                verifier_options: dict[str, Any] | None = None, per_item: bool = False) -> list[dict[str, float]]:
    """Results for responses and their ground truths, in order (raises :class:`VerifierErrorRate`)."""
    if len(solution_strs) != len(ground_truths):
        raise ValueError(f"{len(solution_strs)} responses for {len(ground_truths)} ground truths")
    extras = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    prepared = [row_for(i, str(text), _label(gt, extra), {}, domain)
                for i, (text, gt, extra) in enumerate(zip(solution_strs, ground_truths, extras))]
    verdicts = verdicts_for(_scorer(url, token, domain, verifier_options), prepared)
    if per_item:
        _budget(max_error_rate).check(verdicts, "rest-em compute_score")
    else:  # a whole batch: its own share decides
        ErrorBudget(max_error_rate, window=max(1, len(verdicts)), min_items=1).check(verdicts, "rest-em compute_score (batch)")
    return [_result(v, error_score) for v in verdicts]


def compute_score(data_source: Any = None, solution_str: str | None = None, ground_truth: Any = None,
                  extra_info: Any = None, *, data_sources: Sequence[Any] | None = None,
                  solution_strs: Sequence[str] | None = None, ground_truths: Sequence[Any] | None = None,
                  extra_infos: Sequence[Any] | None = None, url: str | None = None, token: str | None = None,
                  domain: str = "math", max_error_rate: float = 0.0, error_score: float = 0.0,
                  verifier_options: dict[str, Any] | None = None, **_: Any) -> dict[str, float] | list[dict[str, float]]:
    """veRL's reward function contract (per response, or ``batch`` reward manager lists)."""
    options = dict(url=url, token=token, domain=domain, max_error_rate=max_error_rate, error_score=error_score,
                   verifier_options=verifier_options)
    if solution_strs is not None:
        if ground_truths is None:
            raise ValueError("compute_score: solution_strs given without ground_truths")
        return score_batch(list(solution_strs), list(ground_truths), extra_infos, **options)
    if solution_str is None:
        raise ValueError("compute_score needs solution_str (per response) or solution_strs (batch reward manager)")
    return score_batch([solution_str], [ground_truth], [extra_info], per_item=True, **options)[0]
