"""DPO over the E-step's verified samples (Rafailov et al. 2023, "Direct Preference Optimization",
arXiv 2305.18290), trained with TRL's ``DPOTrainer``.

- Pairs (``iter_NN/train_set.jsonl``, stage ``dataset``): for each problem, every (correct, incorrect)
  combination of its distinct ``pass`` and ``fail`` samples (``error`` verdicts never enter), of which at
  most ``dpo.pairs_per_problem`` are kept, a seeded choice. A problem with only correct or only
  incorrect samples gives no pair; the dataset stage counts those problems for the report.
- Start (``dpo.init``): by default (``sft``) the M-step's start (``mstep.init``, the base model by default)
  fine-tuned on the iteration's correct samples first (``iter_NN/sft_checkpoint``, stage ``sft_train``);
  with ``base`` the M-step's start itself. The reference model is the start (TRL copies it).
- ``beta``, ``loss_type``, ``sft_weight``, ``learning_rate`` come from ``dpo.*``, every other optimizer setting from
  ``training.*``. The checkpoint is a Hugging Face model in safetensors, like the SFT M-step's.
- TRL's trainer runs in the driver process: ``training.launcher`` is refused when the config loads, and the
  ``training.*`` keys it does not read (DeepSpeed, early stopping, packing, the launcher's) are named in a
  warning (``DPO.unused_keys``). ``filter.dedupe`` and ``filter.seed`` drive the choice of pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from rest_em.algorithms.base import Algorithm, Rows
from rest_em.fields import opt
from rest_em.mstep import m_step
from rest_em.training.launch import make_trainer

if TYPE_CHECKING:
    from pathlib import Path

    from rest_em.policy import Policy
    from rest_em.problem_sets import ProblemSet
    from rest_em.verification import VerifiedSample


@dataclass
class DPOSection:
    pairs_per_problem: int = opt(4, "dpo: most (correct, incorrect) pairs per problem, a seeded choice (`filter.seed`) "
                                 "among all pairs of its distinct (`filter.dedupe`) correct and incorrect samples")
    beta: float = opt(0.1, "dpo: the KL strength beta of the DPO loss (Rafailov et al. 2023 use 0.1)")
    loss_type: str = opt("sigmoid", "dpo: TRL's `DPOConfig.loss_type` (`sigmoid` = the DPO paper's loss, `ipo`, "
                         "`hinge`, ...)")
    # The defaults (an SFT start, 1e-6, an SFT term of weight 1) were set by measurement on the embedded default:
    # plain DPO from the base model at training.learning_rate lost the \boxed{} format and collapsed, these did
    # not over 3 seeds (docs/algorithms.md, "DPO: the defaults, by measurement").
    init: Literal["base", "sft"] = opt("sft", "dpo: `sft` = first fine-tune the M-step's start (`mstep.init`) on the "
                                       "iteration's correct samples (the ReST-EM M-step, `training.*`, "
                                       "`iter_NN/sft_checkpoint`), then DPO from that, which is also the reference "
                                       "model; `base` = DPO from the M-step's start itself")
    learning_rate: float | None = opt(1e-6, "dpo: peak learning rate of the DPO step (the DPO paper's 1e-6); `null` = "
                                      "`training.learning_rate` (every other optimizer setting is `training.*`)")
    sft_weight: float = opt(1.0, "dpo: weight of an SFT term (the chosen completions' mean negative log-likelihood) "
                            "added to the DPO loss, RPO (Pang et al. 2024); TRL's `loss_type: [<loss_type>, sft]` "
                            "with `loss_weights: [1, sft_weight]`; 0 = plain DPO")

    def __post_init__(self) -> None:
        if self.pairs_per_problem < 1:
            raise ValueError(f"dpo.pairs_per_problem must be >= 1, got {self.pairs_per_problem}")
        if self.beta <= 0:
            raise ValueError(f"dpo.beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            raise ValueError(f"dpo.sft_weight must be >= 0, got {self.sft_weight}")


# training.* keys TRL's DPOTrainer (rest_em.algorithms.dpo_trainer) does not read, and why.
_IN_PROCESS = "DPO trains in the driver process with TRL's trainer"
DPO_UNUSED_TRAINING = {
    "training.backend": "TRL's DPOTrainer runs without the project's DeepSpeed set-up",
    "training.deepspeed_config": "TRL's DPOTrainer runs without the project's DeepSpeed set-up",
    "training.zero_stage": "TRL's DPOTrainer runs without the project's DeepSpeed set-up",
    "training.early_stopping": "DPO trains for training.num_epochs without a validation split",
    "training.val_fraction": "DPO trains for training.num_epochs without a validation split",
    "training.early_stopping_patience": "DPO trains for training.num_epochs without a validation split",
    "training.evals_per_epoch": "DPO trains for training.num_epochs without a validation split",
    "training.num_processes": _IN_PROCESS,
    "training.num_nodes": _IN_PROCESS,
    "training.hostfile": _IN_PROCESS,
    "training.master_addr": _IN_PROCESS,
    "training.master_port": _IN_PROCESS,
    "training.remote_shell": _IN_PROCESS,
    "training.packing": "TRL pads each (chosen, rejected) batch itself",
    "training.supervised_logits_only": "the DPO loss needs the log-probabilities of every completion token of both",
    "training.share_prompts": "TRL pads each (chosen, rejected) batch itself",
}


def build_pairs(verified: Sequence["VerifiedSample"], prompts: dict[str, str], pairs_per_problem: int, dedupe: bool,
                seed: int, iteration: int) -> tuple[Rows, dict[str, Any]]:
    """Preference pairs of one correct and one incorrect sample of the same problem, and their counts."""
    by_problem: dict[str, dict[str, list["VerifiedSample"]]] = {}
    for s in sorted(verified, key=lambda s: (s.problem_id, s.sample_idx)):
        groups = by_problem.setdefault(s.problem_id, {"pass": [], "fail": [], "error": []})
        if dedupe and any(o.text.strip() == s.text.strip() for o in groups[s.verdict]):
            continue
        groups[s.verdict].append(s)
    rows: Rows = []
    counts = {"problems": len(by_problem), "problems_with_pairs": 0, "problems_only_correct": 0,
              "problems_only_incorrect": 0, "problems_without_valid_samples": 0}
    for pid in sorted(by_problem):
        good, bad = by_problem[pid]["pass"], by_problem[pid]["fail"]
        if good and bad:
            counts["problems_with_pairs"] += 1
        elif good:
            counts["problems_only_correct"] += 1
            continue
        elif bad:
            counts["problems_only_incorrect"] += 1
            continue
        else:
            counts["problems_without_valid_samples"] += 1
            continue
        combos = [(g, b) for g in good for b in bad]
        rng = random.Random(f"{seed}:{iteration}:{pid}")
        chosen = sorted(rng.sample(range(len(combos)), min(pairs_per_problem, len(combos))))
        for i in chosen:
            g, b = combos[i]
            rows.append({"problem_id": pid, "iteration": iteration, "chosen_idx": g.sample_idx,
                         "rejected_idx": b.sample_idx, "prompt": prompts[pid], "chosen": g.text,
                         "rejected": b.text, "source": "sample"})
    return rows, {**counts, "pairs": len(rows)}


class DPO(Algorithm):
    name = "dpo"
    source = "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290), via TRL's DPOTrainer"
    Section = DPOSection
    own_set = True
    trains_in_process = True
    unused_keys = DPO_UNUSED_TRAINING
    empty_reason = "no (correct, incorrect) pair of the same problem"

    @classmethod
    def unused_settings(cls, cfg: Any) -> Mapping[str, str]:
        out = dict(cls.unused_keys)
        if cfg.dpo.init == "base":  # under dpo.init: sft both drive the SFT start (training.*, filter.*)
            if cfg.dpo.learning_rate is not None:
                out["training.learning_rate"] = ("dpo.learning_rate is set and takes its place (training.learning_rate "
                                                 "trains the SFT start of dpo.init: sft)")
            out["filter.cap"] = "pairs are capped by dpo.pairs_per_problem (filter.cap caps the SFT start of dpo.init: sft)"
        return out

    def trainer(self) -> Any:
        from rest_em.algorithms.dpo_trainer import TRLDPOTrainer

        return TRLDPOTrainer(self.cfg.training, self.settings)

    def own_rows(self, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"], sft: Rows
                 ) -> tuple[Rows, dict[str, Any]]:
        f, p = self.cfg.filter, self.settings
        return build_pairs(verified, train.prompts, p.pairs_per_problem, f.dedupe, f.seed, iteration)

    def row_key(self, row: dict[str, Any]) -> tuple:
        return row["problem_id"], row["prompt"], row["chosen"].strip(), row["rejected"].strip()

    def init(self, iteration: int, policy: "Policy", free_memory: Callable[[], None]) -> "Path":
        start = super().init(iteration, policy, free_memory)
        if self.settings.init == "base":
            return start
        sft = self.sft_rows[iteration]  # the filter stage's correct samples of this iteration (train_set ran first)
        step = m_step(self.rd, iteration, start, sft, make_trainer(self.cfg.training), free_memory=free_memory,
                      stage="sft_train", dirname="sft_checkpoint")
        return start if step.skipped else step.checkpoint


ALGORITHM = DPO
