"""The algorithm interface, with ReST-EM (Singh et al. 2023) as its plain case.

An algorithm is one module of ``rest_em/algorithms/`` (or a plugin file) that sets ``ALGORITHM = <class>``;
the registry (rest_em/registry.py) finds it by its ``name``. The class holds everything that is the
algorithm's own:

- ``Section``: the dataclass of its config section (``<section_key()>:`` in the YAML), each field an
  ``opt()`` with its help text; ``None`` for none. The config reference and ``cfg.<key>`` come from it.
- ``unused_keys``: the shared settings (``training.*``, ``sampling.*``, ``filter.*``, ...) it does not read,
  each with why; the ones set to a non-default value are named in one warning when the config loads.
- ``renamed_keys``: its old keys and the keys that replaced them (loaded with a message).
- ``trains_in_process``: it cannot train under ``training.launcher`` (the config is refused at load).

and the hooks the one driver (rest_em/loop.py) calls:

- ``iterations()``: how many improvement steps the run has (``cfg.iterations``).
- ``check(sets)``: refuse problems the algorithm cannot run on, before anything is sampled.
- ``condition(policy)``: the policy the E-step and the evaluation sample from (RCRL appends its reward
  token to every prompt); default: the policy as is.
- ``improve(t, policy, sets) -> Policy``: iteration ``t``'s improvement step. The default is the
  offline one: the E-step (sample and verify), ``train_set``, ``init``, then the M-step with ``trainer()``.
  An online algorithm (GRPO) overrides it with a training segment.
- ``train_set(t, train, verified)``: the M-step's rows of iteration ``t``, built from the E-step's
  ``verified`` samples (each joined with its verdict once). The filter stage (``sft.jsonl``: capped,
  deduplicated correct samples, the report's train coverage) always runs; an algorithm with rows of its
  own (``own_rows``) or with ``filter.accumulate`` writes them as the stage ``dataset``
  (``iter_NN/train_set.jsonl``, every row with ``source: sample | reference``).
- ``init(t, policy, free_memory)``: where the M-step starts: the base model (``mstep.init: base``) or the
  previous iteration's policy (``previous``).
- ``trainer()``: the ``mstep.Trainer`` (SFT, launched when ``training.launcher`` is set, unless the
  algorithm says otherwise).
- ``report_section(run_dir, data, config)``: the algorithm's part of report.md (a class method: the
  report is rebuilt from the run directory alone).

ReST-EM: this iteration's correct samples, from the base model, with SFT.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from rest_em.estep import e_step
from rest_em.filtering import filter_stage
from rest_em.mstep import Trainer, m_step
from rest_em.policy import Policy
from rest_em.rundir import RunDir, read_rows
from rest_em.training.launch import make_trainer

if TYPE_CHECKING:
    from rest_em.config import Config
    from rest_em.problem_sets import ProblemSet, ProblemSets
    from rest_em.verification import VerifiedSample

Rows = list[dict[str, Any]]

logger = logging.getLogger(__name__)


class Algorithm:
    name = "rest_em"
    source = "Singh et al. 2023, Beyond Human Data (arXiv 2312.06585)"
    Section: ClassVar[type | None] = None  # the config section's dataclass; None = no settings of its own
    section: ClassVar[str | None] = None  # its config key; None = ``name``
    unused_keys: ClassVar[Mapping[str, str]] = {}  # shared keys (or whole sections) it does not read -> why
    renamed_keys: ClassVar[Mapping[str, str]] = {}  # its old keys -> the keys that replaced them
    trains_in_process = False  # True: it cannot honour training.launcher (refused when the config loads)
    default_accumulate = False  # filter.accumulate: null
    default_init = "base"  # mstep.init: null
    own_set = False  # True: the M-step trains on rows of the algorithm's own (own_rows), not sft.jsonl as is
    empty_reason = "no correct samples"  # why an M-step with no rows is skipped

    def __init__(self, cfg: "Config", rd: RunDir, base: Path) -> None:
        self.cfg, self.rd, self.base = cfg, rd, Path(base)
        self.accumulate = cfg.filter.accumulate if cfg.filter.accumulate is not None else self.default_accumulate
        self.init_from = cfg.mstep.init or self.default_init
        self._trainer: Trainer | None = None
        self.sft_rows: dict[int, Rows] = {}  # iteration -> the filter stage's rows (read once per stage)

    @classmethod
    def section_key(cls) -> str | None:
        """The config key of the algorithm's section (None when it has none)."""
        return None if cls.Section is None else (cls.section or cls.name)

    @classmethod
    def unused_settings(cls, cfg: "Config") -> Mapping[str, str]:
        """The keys this run's algorithm does not read (``unused_keys``; override when it depends on the config)."""
        return cls.unused_keys

    @property
    def settings(self) -> Any:
        """This run's values of the algorithm's section (``cfg.<section_key()>``)."""
        key = self.section_key()
        if key is None:
            raise AttributeError(f"algorithm {self.name} has no config section")
        return getattr(self.cfg, key)

    # -- hooks ------------------------------------------------------------------------------------

    def iterations(self) -> int:
        return self.cfg.iterations

    def check(self, sets: "ProblemSets") -> None:
        """Raise ``ConfigError`` when the algorithm cannot run on these problems (before any stage runs)."""

    def condition(self, policy: Policy) -> Policy:
        return policy

    def trainer(self) -> Trainer:
        return make_trainer(self.cfg.training)

    def init(self, iteration: int, policy: Policy, free_memory: Callable[[], None]) -> Path:
        return self.base if self.init_from == "base" else Path(policy.path)

    def improve(self, iteration: int, policy: Policy, sets: "ProblemSets") -> Policy:
        """The offline improvement step: E-step from ``policy``, the M-step set, the M-step; the new policy."""
        verified = e_step(self.rd, iteration, self.condition(policy), sets.train, self.cfg.sampling, self.cfg.verifier)
        rows = self.train_set(iteration, sets.train, verified)
        free_memory = policy.samplers.make_room_for_training
        init = self.init(iteration, policy, free_memory)
        if self._trainer is None:
            self._trainer = self.trainer()
        # With nothing to train on, the M-step's start stays the policy (ReST-EM: the base model).
        step = m_step(self.rd, iteration, init, rows, self._trainer, free_memory=free_memory,
                      empty_reason=self.empty_reason)
        return Policy(init if step.skipped else step.checkpoint, policy.samplers)

    def own_rows(self, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"], sft: Rows
                 ) -> tuple[Rows, dict[str, Any]]:
        """This iteration's rows before accumulation; default: the filter's correct samples."""
        return [{**r, "source": "sample"} for r in sft], {}

    def row_key(self, row: dict[str, Any]) -> tuple:
        """Rows with the same key are one row when sets of several iterations are joined."""
        return row["problem_id"], row["prompt"], row["completion"].strip()

    # -- the dataset stage ------------------------------------------------------------------------

    def train_set(self, iteration: int, train: "ProblemSet", verified: Sequence["VerifiedSample"]) -> Rows:
        sft = self.sft_rows[iteration] = filter_stage(self.rd, iteration, train, verified, self.cfg.filter)
        if not (self.own_set or self.accumulate):
            return sft  # ReST-EM: the filter's rows are the M-step's

        def compute() -> tuple[Rows, dict[str, Any]]:
            rows, info = self.own_rows(iteration, train, verified, sft)
            if self.accumulate:
                previous = self.previous_set(iteration)
                rows, dropped = accumulate(previous, rows, self.row_key)
                info = {**info, "accumulated": True, "rows_from_earlier_iterations": len(previous),
                        "duplicates_dropped_across_iterations": dropped}
            info = {**info, "num_rows": len(rows),
                    "sources": dict(sorted(Counter(r.get("source", "sample") for r in rows).items()))}
            logger.info("%s dataset %d: %s", self.name, iteration, info)
            return rows, info

        return self.rd.stage_rows(iteration, "dataset", "train_set.jsonl", compute)

    def previous_set(self, iteration: int) -> Rows:
        if iteration <= 1:
            return []
        path = self.rd.iter_dir(iteration - 1) / "train_set.jsonl"
        if not self.rd.done(iteration - 1, "dataset"):
            raise RuntimeError(f"{path} is missing: iteration {iteration - 1} has no finished dataset stage to "
                               "accumulate (was filter.accumulate changed in this run?)")
        return read_rows(path)

    # -- the report ---------------------------------------------------------------------------------

    @classmethod
    def report_section(cls, run_dir: Path, data: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
        """The algorithm's lines of report.md: by default the M-step set of each iteration where the algorithm
        wrote one (stage ``dataset``: rows by source and the algorithm's counts)."""
        datasets = [(e["iteration"], e["dataset"]) for e in data["iterations"] if e.get("dataset")]
        if not datasets:
            return []
        lines = ["", f"## Training set (`{cls.name}`)", "", "| iter | rows | by source | counts |", "|---|---|---|---|"]
        for t, ds in datasets:
            rest = {k: v for k, v in ds.items() if k not in ("num_rows", "sources")}
            lines.append(f"| {t} | {ds.get('num_rows', '—')} | "
                         + ", ".join(f"{k} {v}" for k, v in (ds.get("sources") or {}).items())
                         + " | " + ", ".join(f"{k} {v}" for k, v in rest.items()) + " |")
        return lines


def accumulate(previous: Rows, new: Rows, key: Callable[[dict[str, Any]], tuple]) -> tuple[Rows, int]:
    """``previous`` then the rows of ``new`` not already there (by ``key``, first occurrence kept),
    ordered by problem; and how many rows of ``new`` were dropped as duplicates."""
    seen: set[tuple] = set()
    out: Rows = []
    dropped = 0
    for i, row in enumerate([*previous, *new]):
        k = key(row)
        if k in seen:
            dropped += i >= len(previous)
            continue
        seen.add(k)
        out.append(row)
    return sorted(out, key=lambda r: r["problem_id"]), dropped  # stable: earlier iterations first


class ReSTEM(Algorithm):
    """ReST-EM: the plain case (``algorithm: rest_em``, the default)."""


ALGORITHM = ReSTEM
