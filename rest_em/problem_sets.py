"""Problem-set bundles: everything a stage needs to sample and verify one set of problems.

    sets = build_problem_sets(cfg)            # once per run
    sets.train                                # the E-step's problems
    sets.evals                                # [test, transfer...]: evaluated after every M-step

A bundle carries its name (which names its stages and folders: ``eval``, ``transfer``), the problems,
their rendered prompts, the stop strings the prompt format needs, the verifier domain and a lazily
started verifier (one per domain, shared by the bundles of that domain).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rest_em.config import Config
from rest_em.prompts import make_prompt_format
from rest_em.tasks import load_task, load_transfer
from rest_em.tasks.base import Problem, Task
from rest_em.verification import LazyVerifier

logger = logging.getLogger(__name__)


@dataclass
class ProblemSet:
    name: str  # "train", "eval", "transfer": names the stages and folders of this set
    problems: list[Problem]
    prompts: dict[str, str]  # problem_id -> the exact prompt string the sampler continues and SFT trains on
    stop: tuple[str, ...]  # stop strings the prompt format needs
    domain: str  # verifier domain
    verifier: LazyVerifier
    task: Task  # where the problems came from (reference solutions, level names)

    def by_id(self) -> dict[str, Problem]:
        return {p.problem_id: p for p in self.problems}


@dataclass
class ProblemSets:
    train: ProblemSet
    evals: list[ProblemSet] = field(default_factory=list)

    def close(self) -> None:
        for v in {id(s.verifier): s.verifier for s in (self.train, *self.evals)}.values():
            v.close()


def build_problem_sets(cfg: Config, base: Path) -> ProblemSets:
    """The train bundle, the test bundle and (when configured) the transfer bundle, each built once."""
    verifiers: dict[str, LazyVerifier] = {}

    def bundle(name: str, task: Task, problems: list[Problem]) -> ProblemSet:
        fmt = make_prompt_format(str(base), cfg.model.prompt_style, task)
        custom = cfg.verifier.custom or task.custom_verifier  # a scoring function replaces the domain's verifier
        key = f"{task.domain}:{custom or ''}"
        if key not in verifiers:
            verifiers[key] = LazyVerifier(cfg.verifier, task.domain, custom)
        return ProblemSet(name, problems, {p.problem_id: fmt.render(p) for p in problems}, fmt.stop, task.domain,
                          verifiers[key], task)

    task = load_task(cfg.task)
    if task.data_info is not None:  # rows read and skipped while loading: the report's "Data" section
        from verifiers.io import write_text_atomic

        cfg.run_dir().mkdir(parents=True, exist_ok=True)
        write_text_atomic(cfg.run_dir() / "data.json", json.dumps(task.data_info, indent=1))
    sets = ProblemSets(bundle("train", task, task.train), [bundle("eval", task, task.test)])
    transfer = load_transfer(cfg.task)
    if transfer is not None:
        sets.evals.append(bundle("transfer", transfer, transfer.test))
    logger.info("problems: %s", ", ".join(f"{s.name} {len(s.problems)}" for s in (sets.train, *sets.evals)))
    return sets
