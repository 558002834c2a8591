"""Config sections of the M-step algorithms other than ReST-EM (``mstep``, ``hpt``, ``dpo``).

Kept apart from rest_em/config.py so that file stays the schema of the shared stages; ``Config`` has one
field per section here. Light: imports nothing but the field helper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rest_em.fields import opt


@dataclass
class MStepSection:
    init: Literal["base", "previous"] | None = opt(
        None, "where each M-step starts: `base` (the base model, as ReST-EM) or `previous` (the policy of the "
        "previous iteration); `null` = the algorithm's preset (`base` for every algorithm here: ReST-EM and, as "
        "Havrilla et al. 2024 do, Expert Iteration)")


@dataclass
class HPTSection:
    threshold: float = opt(0.0, "hpt_gate: a train problem whose E-step pass rate is at or below this trains on its "
                           "reference solution instead of its samples (Lv et al. 2025 use 0: only unsolved problems)")


@dataclass
class RCRLSection:
    incorrect_per_problem: int | None = opt(
        None, "rcrl: most incorrect samples kept per problem, a seeded choice (`null` = all, as RCRL trains on every "
        "sample); a small number balances the two reward tokens and bounds the M-step's cost")

    def __post_init__(self) -> None:
        if self.incorrect_per_problem is not None and self.incorrect_per_problem < 0:
            raise ValueError(f"rcrl.incorrect_per_problem must be >= 0, got {self.incorrect_per_problem}")


@dataclass
class DPOSection:
    pairs_per_problem: int = opt(4, "dpo: most (correct, incorrect) pairs per problem, a seeded choice among all pairs "
                                 "of its distinct correct and incorrect samples")
    beta: float = opt(0.1, "dpo: the KL strength beta of the DPO loss (Rafailov et al. 2023 use 0.1)")
    loss_type: str = opt("sigmoid", "dpo: TRL's `DPOConfig.loss_type` (`sigmoid` = the DPO paper's loss, `ipo`, "
                         "`hinge`, ...)")
    init: Literal["base", "sft"] = opt("base", "dpo: `base` = DPO from the M-step's start (`mstep.init`); `sft` = first "
                                       "fine-tune it on the iteration's correct samples (the ReST-EM M-step, "
                                       "`iter_NN/sft_checkpoint`), then DPO from that, which is also the reference model")
    learning_rate: float | None = opt(None, "dpo: peak learning rate; `null` = `training.learning_rate` (every other "
                                      "optimizer setting is `training.*`)")

    def __post_init__(self) -> None:
        if self.pairs_per_problem < 1:
            raise ValueError(f"dpo.pairs_per_problem must be >= 1, got {self.pairs_per_problem}")
        if self.beta <= 0:
            raise ValueError(f"dpo.beta must be > 0, got {self.beta}")


def algorithm_warnings(cfg: Any) -> list[str]:
    """Algorithm settings that are set but have no effect with ``cfg.algorithm``."""
    out = []
    if cfg.algorithm != "hpt_gate" and cfg.hpt != HPTSection():
        out.append(f"hpt.* is set but algorithm is {cfg.algorithm}: it applies to hpt_gate only")
    if cfg.algorithm != "rcrl" and cfg.rcrl != RCRLSection():
        out.append(f"rcrl.* is set but algorithm is {cfg.algorithm}: it applies to rcrl only")
    if cfg.algorithm != "dpo" and cfg.dpo != DPOSection():
        out.append(f"dpo.* is set but algorithm is {cfg.algorithm}: it applies to dpo only")
    return out
