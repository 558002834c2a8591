"""DPO over the E-step's verified samples (Rafailov et al. 2023, "Direct Preference Optimization",
arXiv 2305.18290), trained with TRL's ``DPOTrainer``.

- Pairs (``iter_NN/train_set.jsonl``, stage ``dataset``): for each problem, every (correct, incorrect)
  combination of its distinct ``pass`` and ``fail`` samples (``error`` verdicts never enter), of which at
  most ``dpo.pairs_per_problem`` are kept, a seeded choice. A problem with only correct or only
  incorrect samples gives no pair; the dataset stage counts those problems for the report.
- Start: the M-step's start (``mstep.init``, the base model by default), or with ``dpo.init: sft`` that
  start fine-tuned on the iteration's correct samples first (``iter_NN/sft_checkpoint``, stage
  ``sft_train``). The reference model is the start (TRL copies it).
- ``beta``, ``loss_type``, ``learning_rate`` come from ``dpo.*``, every other optimizer setting from
  ``training.*``. The checkpoint is a Hugging Face model in safetensors, like the SFT M-step's.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable

from rest_em.algorithms.base import Algorithm, Rows
from rest_em.mstep import m_step
from rest_em.rundir import read_rows
from rest_em.training.launch import make_trainer

if TYPE_CHECKING:
    from pathlib import Path

    from rest_em.policy import Policy
    from rest_em.problem_sets import ProblemSet


def build_pairs(samples: Rows, verdicts: Rows, prompts: dict[str, str], pairs_per_problem: int, dedupe: bool,
                seed: int, iteration: int) -> tuple[Rows, dict[str, Any]]:
    """Preference pairs of one correct and one incorrect sample of the same problem, and their counts."""
    verdict_of = {(v["problem_id"], v["sample_idx"]): v["verdict"] for v in verdicts}
    by_problem: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for s in sorted(samples, key=lambda s: (s["problem_id"], s["sample_idx"])):
        verdict = verdict_of.get((s["problem_id"], s["sample_idx"]))
        if verdict is None:
            raise ValueError(f"no verdict for sample {s['problem_id']}#{s['sample_idx']}")
        groups = by_problem.setdefault(s["problem_id"], {"pass": [], "fail": [], "error": []})
        if dedupe and any(o["text"].strip() == s["text"].strip() for o in groups[verdict]):
            continue
        groups[verdict].append(s)
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
            rows.append({"problem_id": pid, "iteration": iteration, "chosen_idx": g["sample_idx"],
                         "rejected_idx": b["sample_idx"], "prompt": prompts[pid], "chosen": g["text"],
                         "rejected": b["text"], "source": "sample"})
    return rows, {**counts, "pairs": len(rows)}


class DPO(Algorithm):
    name = "dpo"
    source = "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290), via TRL's DPOTrainer"
    own_set = True
    empty_reason = "no (correct, incorrect) pair of the same problem"

    def trainer(self) -> Any:
        from rest_em.algorithms.dpo_trainer import TRLDPOTrainer

        return TRLDPOTrainer(self.cfg.training, self.cfg.dpo)

    def own_rows(self, iteration: int, train: "ProblemSet", sft: Rows) -> tuple[Rows, dict[str, Any]]:
        d = self.rd.iter_dir(iteration)
        f, p = self.cfg.filter, self.cfg.dpo
        return build_pairs(read_rows(d / "samples.jsonl"), read_rows(d / "verdicts.jsonl"), train.prompts,
                           p.pairs_per_problem, f.dedupe, f.seed, iteration)

    def row_key(self, row: dict[str, Any]) -> tuple:
        return row["problem_id"], row["prompt"], row["chosen"].strip(), row["rejected"].strip()

    def init(self, iteration: int, policy: "Policy", free_memory: Callable[[], None]) -> "Path":
        start = super().init(iteration, policy, free_memory)
        if self.cfg.dpo.init == "base":
            return start
        sft = read_rows(self.rd.iter_dir(iteration) / "sft.jsonl")
        step = m_step(self.rd, iteration, start, sft, make_trainer(self.cfg.training), free_memory=free_memory,
                      stage="sft_train", dirname="sft_checkpoint")
        return start if step.skipped else step.checkpoint
