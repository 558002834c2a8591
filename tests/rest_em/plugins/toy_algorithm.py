"""A toy algorithm in one file, registered as a plugin (``plugins: [tests/rest_em/plugins/toy_algorithm.py]``):
it trains on the first ``toy_best_of.keep`` correct samples of each problem and adds its own report section.
Used by tests/rest_em/test_algorithm_registry.py to show that adding an algorithm touches one file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rest_em.algorithms.base import Algorithm, Rows
from rest_em.fields import opt


@dataclass
class ToySection:
    keep: int = opt(1, "correct samples kept per problem (the lowest sample_idx first)")

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"toy_best_of.keep must be >= 1, got {self.keep}")


class ToyBestOf(Algorithm):
    name = "toy_best_of"
    source = "a test plugin"
    Section = ToySection
    own_set = True
    unused_keys = {"filter.cap": "toy_best_of.keep caps the rows"}

    def own_rows(self, iteration: int, train: Any, verified: Sequence[Any], sft: Rows) -> tuple[Rows, dict[str, Any]]:
        first: dict[str, int] = {}
        rows = []
        for v in verified:  # the E-step's samples joined with their verdicts, by problem then sample
            if v.passed and first.get(v.problem_id, 0) < self.settings.keep:
                first[v.problem_id] = first.get(v.problem_id, 0) + 1
                rows.append({"problem_id": v.problem_id, "sample_idx": v.sample_idx, "iteration": iteration,
                             "prompt": train.prompts[v.problem_id], "completion": v.text, "source": "sample"})
        return rows, {"kept_per_problem": self.settings.keep}

    @classmethod
    def report_section(cls, run_dir: Path, data: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
        return ["", "## Toy best-of", "", f"keep = {config['toy_best_of']['keep']}, "
                f"{len(data['iterations'])} report rows"]


ALGORITHM = ToyBestOf
