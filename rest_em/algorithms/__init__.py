"""The M-step algorithms over the E-step's verified samples, one module each, behind one registry.

    algo = make_algorithm(cfg, rd, base)       # cfg.algorithm: rest_em, expert_iteration, rcrl, hpt_gate, dpo
    algo.check(sets)                            # refuse a task the algorithm cannot run on
    e_step(rd, t, algo.condition(policy), ...)  # prompt conditioning (RCRL's reward token), else the policy as is
    rows = algo.train_set(t, sets.train)        # the M-step's rows of iteration t (resumable stages)
    init = algo.init(t, policy, free_memory)    # where the M-step starts (base, previous, DPO's SFT iterate)
    step = m_step(rd, t, init, rows, algo.trainer())

``online_runner("grpo")`` is the whole-run entry point of an online algorithm (``rest_em.online.grpo:run``),
imported only when asked for. Nothing heavy is imported here: each algorithm's module is loaded on use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rest_em.config import ConfigError

if TYPE_CHECKING:
    from rest_em.algorithms.base import Algorithm
    from rest_em.config import Config
    from rest_em.rundir import RunDir

# algorithm name -> "module:class" of an iterative algorithm (E-step, dataset, M-step, evaluation).
ALGORITHMS = {
    "rest_em": "rest_em.algorithms.base:ReSTEM",
    "expert_iteration": "rest_em.algorithms.expert_iteration:ExpertIteration",
    "rcrl": "rest_em.algorithms.rcrl:RCRL",
    "hpt_gate": "rest_em.algorithms.hpt:HPTGate",
    "dpo": "rest_em.algorithms.dpo:DPO",
    "sft": "rest_em.algorithms.sft:SFT",
}
# algorithm name -> "module:function" that runs a whole run itself, and the message when it is absent.
ONLINE = {"grpo": ("rest_em.online.grpo:run", "grpo needs the online RL module (rest_em.online.grpo), which is not "
                                               "part of this build; use one of " + ", ".join(ALGORITHMS))}


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def make_algorithm(cfg: "Config", rd: "RunDir", base: Path) -> "Algorithm":
    try:
        spec = ALGORITHMS[cfg.algorithm]
    except KeyError:
        raise ConfigError(f"algorithm {cfg.algorithm!r} runs no E-step/M-step loop; choose one of "
                          f"{', '.join(ALGORITHMS)}") from None
    return _load(spec)(cfg, rd, base)


def online_runner(name: str) -> Callable[["Config"], Path] | None:
    """The run function of an online algorithm (None for the iterative ones); a clear error when absent."""
    if name not in ONLINE:
        return None
    spec, missing = ONLINE[name]
    module = spec.partition(":")[0]
    try:
        return _load(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise ConfigError(missing) from None
        raise
