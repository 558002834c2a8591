"""``task.name: reasoning_gym``: procedural problems from one reasoning-gym dataset, a config per level.

    task:
      name: reasoning_gym
      num_train: 64
      num_test: 32
      seed: 0
      rg:
        dataset: chain_sum
        levels: [{min_terms: 2, max_terms: 2, max_digits: 1}, {min_terms: 3, max_terms: 3, max_digits: 1}]

Each level ``i`` (1-based) is ``reasoning_gym.create_dataset(dataset, **levels[i-1], seed=..., size=...)``;
the problems of a split are spread over the levels equally (``task.level_weights`` weighs them), drawn
with seeds derived from ``task.seed``, the split and the level, so the test split does not change with
``num_train``. A question drawn twice is kept once (test first, then train, then few-shot examples).

The verifier is the dataset's own ``score_answer``, called through the custom-verifier hook
(``verifiers.custom``, in killable worker processes) by ``score`` below, on the answer the math
extraction policies (``task.rg.extraction_policies``; default ``verifiers.math.extract.DEFAULT_POLICIES``:
the last ``\\boxed{}``, "the answer is ...", "#### ...") pull out of the response. A score of ``verifier.custom_threshold`` (1.0) passes.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
from typing import Any, Sequence

from rest_em.config import ConfigError, TaskSection
from rest_em.tasks.base import Problem, Task
from rest_em.tasks.math_data import MATH_INSTRUCTION

logger = logging.getLogger(__name__)

SCORER = "rest_em.tasks.reasoning_gym:score"


def _import() -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise ConfigError("task reasoning_gym needs the reasoning-gym package: pip install 'rest-em[rg]' "
                          "(or pip install reasoning-gym)") from None
    return reasoning_gym


def config_class(name: str) -> Any:
    """The dataclass of a reasoning-gym dataset's config; an unknown name lists the closest ones."""
    _import()
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        hints = difflib.get_close_matches(name, list(DATASETS), n=3)
        raise ConfigError(f"task.rg.dataset {name!r} is not a reasoning-gym dataset" + (
            f"; did you mean {', '.join(map(repr, hints))}?" if hints else f"; there are {len(DATASETS)}, e.g. "
            f"{', '.join(sorted(DATASETS)[:10])}"))
    return DATASETS[name][1]


def make_dataset(name: str, config: dict[str, Any], seed: int, size: int) -> Any:
    import dataclasses

    cls = config_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in config:
        if key in ("seed", "size"):
            raise ConfigError(f"task.rg.levels: {key!r} is set by rest-em (task.seed, task.num_train / num_test), not per level")
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"task.rg.levels: {name} has no config key {key!r}" + (
                f"; did you mean {hint[0]!r}?" if hint else f"; its keys: {', '.join(sorted(known - {'seed', 'size'}))}"))
    try:
        return _import().create_dataset(name, **config, seed=seed, size=size)
    except (AssertionError, ValueError, TypeError) as exc:
        raise ConfigError(f"task.rg.levels: {name} config {config} is not valid: {exc or type(exc).__name__}") from None


def _seed(seed: int, split: str, level: int) -> int:
    return random.Random(f"{seed}:{split}:{level}").randrange(2**31)


def _entry(e: dict[str, Any]) -> dict[str, Any]:
    """The entry as JSON data (metadata holds tuples): what score_answer is given back in the worker."""
    return json.loads(json.dumps(e, default=lambda o: list(o) if isinstance(o, (set, frozenset, tuple)) else str(o)))


def _counts(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split over the levels by ``weights``: largest remainders, so the counts add up."""
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def build(s: TaskSection) -> Task:
    rg = s.rg
    if not rg.dataset:
        raise ConfigError("task reasoning_gym: set task.rg.dataset (a reasoning-gym dataset name, e.g. chain_sum)")
    if s.num_train is None or s.num_test is None:
        raise ConfigError("task reasoning_gym is generated: set task.num_train and task.num_test to numbers")
    levels = list(rg.levels) or [{}]
    policies = None
    if rg.extraction_policies is not None:
        from verifiers.math.extract import check_policies

        try:
            policies = list(check_policies(tuple(rg.extraction_policies)))
        except ValueError as exc:
            raise ConfigError(f"task.rg.extraction_policies: {exc}") from None
    for i, cfg in enumerate(levels):
        if not isinstance(cfg, dict):
            raise ConfigError(f"task.rg.levels[{i}] must be a mapping of {rg.dataset}'s config keys, got {cfg!r}")
    chosen = list(range(1, len(levels) + 1)) if s.levels is None else list(s.levels)
    bad = [lv for lv in chosen if not 1 <= lv <= len(levels)]
    if bad:
        raise ConfigError(f"task.levels {s.levels}: reasoning_gym levels are 1..{len(levels)} (one per task.rg.levels entry)")
    weights = list(s.level_weights) if s.level_weights is not None else [1.0] * len(chosen)
    if len(weights) != len(chosen) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"task.level_weights {weights} must be {len(chosen)} non-negative numbers, not all 0")
    seen: set[str] = set()
    splits: dict[str, list[Problem]] = {}
    for split, total in (("test", s.num_test), ("train", s.num_train), ("fewshot", s.num_fewshot)):
        splits[split] = []
        for level, count in zip(chosen, _counts(total, weights)):
            if count:
                splits[split] += _draw(rg.dataset, levels[level - 1], level, split, count, s.seed, seen, policies)
    task = Task("reasoning_gym", "math", splits["train"], splits["test"], MATH_INSTRUCTION, splits["fewshot"],
                custom_verifier=SCORER)
    logger.info("task reasoning_gym %s: %d train, %d test problems at levels %s", rg.dataset, len(task.train),
                len(task.test), chosen)
    return task


def _draw(name: str, config: dict[str, Any], level: int, split: str, count: int, seed: int, seen: set[str],
          policies: list[str] | None = None) -> list[Problem]:
    # A few times the count: questions already drawn for another split are skipped.
    size = 4 * count + 16
    ds = make_dataset(name, config, _seed(seed, split, level), size)
    out: list[Problem] = []
    for index in range(size):
        entry = _entry(ds[index])
        question = entry["question"]
        if question in seen:
            continue
        seen.add(question)
        answer = str(entry["answer"])
        columns = {"data_source": name, "rg_dataset": name, "rg_config": config, "entry": entry}
        if policies is not None:
            columns["extraction_policies"] = policies
        out.append(Problem(f"rg/{name}/{split}/L{level}/{index:05d}", question,
                           {"reference": answer, "reference_format": "answer"}, level,
                           f"The final answer is \\boxed{{{answer}}}.", columns=columns))
        if len(out) == count:
            return out
    raise ConfigError(f"task reasoning_gym: {name} level {level} ({config}) gave only {len(out)} distinct {split} questions "
                      f"of {count}; the level is too small for that many problems")


# ------------------------------------------------------------------ the verifier (runs in worker processes)

_DATASETS: dict[str, Any] = {}


def _scorer_dataset(name: str, config: dict[str, Any]) -> Any:
    key = json.dumps([name, config], sort_keys=True)
    if key not in _DATASETS:
        _DATASETS[key] = make_dataset(name, config, seed=0, size=1)
    return _DATASETS[key]


def score(response: str, reference: Any, problem: dict[str, Any]) -> dict[str, Any] | None:
    """``verifier.custom`` function of task reasoning_gym: the dataset's own ``score_answer`` on the answer
    the math extraction policies find in ``response``. None (an error verdict) for a problem that is not
    a reasoning-gym one."""
    from verifiers.math.extract import DEFAULT_POLICIES, extract_answer, strip_math_delimiters

    columns = problem.get("columns") or {}
    if "entry" not in columns or "rg_dataset" not in columns:
        return None
    answer = extract_answer(response, tuple(columns.get("extraction_policies") or DEFAULT_POLICIES))
    if answer is None or not answer.strip():
        return {"score": 0.0, "reason": "no_answer"}
    answer = strip_math_delimiters(answer.strip()).strip()
    ds = _scorer_dataset(columns["rg_dataset"], columns.get("rg_config") or {})
    return {"score": float(ds.score_answer(answer, columns["entry"])), "answer": answer}


def _warm_up() -> None:
    """Import reasoning-gym (and Math-Verify, for the last_math policy) once per verifier worker, before the
    first item's deadline starts."""
    _import()
    import math_verify  # noqa: F401


score.warm_up = _warm_up  # type: ignore[attr-defined]  # verifiers.custom calls it in each worker
