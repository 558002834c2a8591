"""The algorithms, one module each, found by name through the registry (rest_em/registry.py).

    algo = make_algorithm(cfg, rd, base)      # cfg.algorithm: rest_em, expert_iteration, rcrl, hpt_gate, dpo, grpo, ...
    algo.check(sets)                           # refuse a task the algorithm cannot run on
    policy = algo.improve(t, policy, sets)     # one iteration: E-step + M-step (offline), or a GRPO segment
    algo.condition(policy)                     # the policy the evaluation samples from

Adding an algorithm is one new module here (or a plugin file named in the config's ``plugins``) that sets
``ALGORITHM = <class>``: its config section, the keys it does not read, its hooks and its report section
live in that class (docs/architecture.md, "Add an algorithm in one file"). Nothing heavy is imported
here: each algorithm's module imports torch, transformers or TRL only inside the functions that train.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rest_em.algorithms.base import Algorithm
    from rest_em.config import Config
    from rest_em.rundir import RunDir


def make_algorithm(cfg: "Config", rd: "RunDir", base: Path) -> "Algorithm":
    """The algorithm of ``cfg.algorithm`` (checked against the registry when the config loaded)."""
    return cfg.algorithm_class()(cfg, rd, base)
