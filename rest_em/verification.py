"""Verifying sample rows: the lazily started verifier and the verdict rows shared by the E-step and the
evaluation.

    verifier = LazyVerifier(cfg.verifier, "math")       # remote with verifier.url, else in-process
    verdicts = verify_rows(verifier.get(), problems_by_id, sample_rows, where="iter_01/samples.jsonl")

A sample row the verifier rejects as input is an ``error`` verdict (``bad_item``), never dropped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rest_em.config import VerifierSection
from rest_em.tasks.base import Problem
from verifiers.io import InputError
from verifiers.verdict import Verdict

logger = logging.getLogger(__name__)


class LazyVerifier:
    """The verifier, started on first use: remote when ``verifier.url`` is set, in-process otherwise."""

    def __init__(self, section: VerifierSection, domain: str, custom: str | None = None) -> None:
        # A custom scoring function (verifier.custom, or the task's own) replaces the domain's verifier.
        self.section, self.custom = section, custom
        self.domain = "custom" if custom else domain
        self._verifier: Any = None

    def get(self) -> Any:
        if self._verifier is None:
            s = self.section
            if s.url:
                from verifiers.client import RemoteVerifier

                token = os.environ.get(s.token_env) if s.token_env else None
                self._verifier = RemoteVerifier(s.url, self.domain, token=token)
            else:
                from verifiers.registry import get_verifier

                options = s.options(self.domain)
                if self.custom:
                    options["spec"] = self.custom
                self._verifier = get_verifier(self.domain, **options)
        return self._verifier

    def item_fields(self) -> dict[str, Any]:
        """Fields added to every item: per-item settings that must reach a remote verifier too."""
        if self.domain == "math" and self.section.math.response_format != "text":
            return {"response_format": self.section.math.response_format}
        return {}

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.close()
        self._verifier = None


def verify_rows(
    verifier: Any, problems: Mapping[str, Problem], rows: Sequence[dict[str, Any]], where: str,
    item_fields: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One verdict row per sample row (same order). A row the verifier rejects is an ``error`` verdict."""
    items, slots, verdicts = [], [], [None] * len(rows)
    for i, row in enumerate(rows):
        try:
            problem = problems[row["problem_id"]]
            make_row = problem.custom_row if getattr(verifier, "domain", None) == "custom" else problem.verifier_row
            item = {**make_row(row["text"], row["sample_idx"]), **(item_fields or {})}
            items.append(verifier.parse_item(item, where=f"{where}:{i + 1}"))
            slots.append(i)
        except (InputError, KeyError) as exc:
            logger.error("cannot verify %s row %d: %s", where, i + 1, exc)
            verdicts[i] = Verdict.errored("bad_item", str(exc))
    for i, v in zip(slots, verifier.verify_batch(items) if items else [], strict=True):
        verdicts[i] = v
    keys = ("problem_id", "sample_idx", "mode")
    out = []
    for r, v in zip(rows, verdicts):
        row = {**{k: r[k] for k in keys if k in r}, "verdict": v.outcome.value, "reason": v.reason}
        if v.extracted_by is not None:
            row["extracted_by"] = v.extracted_by  # which extraction policy found the judged answer
        if getattr(v, "answer", None) is not None:
            row["answer"] = v.answer  # a custom verifier's answer: maj@k votes on it
        if v.is_error and v.message:
            row["message"] = v.message[:500]  # what broke on our side, for the outage message and the user
        out.append(row)
    return out


def verdict_counts(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {o: sum(v["verdict"] == o for v in verdicts) for o in ("pass", "fail", "error")}


class VerifierOutage(RuntimeError):
    """A verdicts stage with more ``error`` verdicts than ``verifier.max_error_rate``: our side broke."""


# Hints for the error reasons an outage shows, by the reason's prefix.
_OUTAGE_HINTS = {
    "sandbox": "the Docker engine is not reachable or the sandbox failed: check `docker info` (start dockerd), "
               "then rerun the same command",
    "verifier_unavailable": "the verifier service has no working verifier for this domain: check its /healthz",
    "service": "the verifier service at verifier.url did not answer: check that it runs and is reachable",
    "unparseable_reference": "reference answers cannot be parsed: check the task's data and reference_format",
}


def outage_message(where: str, counts: Mapping[str, int], reasons: Mapping[str, int], first_message: str,
                   max_error_rate: float) -> str:
    total = sum(counts.values())
    top = max(reasons, key=reasons.get) if reasons else "unknown"
    hint = next((h for prefix, h in _OUTAGE_HINTS.items() if top.startswith(prefix)), "see the verdict messages")
    return (f"{where}: {counts['error']} of {total} verdicts are errors (our side broke), above "
            f"verifier.max_error_rate={max_error_rate}; reasons {dict(reasons)}. Likely cause: {hint}. "
            f"First message: {first_message[:300]!r}. The stage is not marked done: rerunning the same command "
            f"re-verifies only the error rows.")


def verdicts_with_retry(
    verifier: Any, problems: Mapping[str, Problem], samples: Sequence[dict[str, Any]], previous: Sequence[dict[str, Any]] | None,
    where: str, item_fields: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Verdict rows for ``samples``. Rows of an earlier try (``previous``, same samples in the same order)
    that are not ``error`` are kept; only the error rows are verified again."""
    key = ("problem_id", "sample_idx", "mode")
    same = previous is not None and len(previous) == len(samples) and all(
        tuple(p.get(k) for k in key) == tuple(s.get(k) for k in key) for p, s in zip(previous, samples))
    if not same:
        return verify_rows(verifier, problems, samples, where, item_fields)
    redo = [i for i, p in enumerate(previous) if p["verdict"] == "error"]
    logger.info("%s: keeping %d verdicts of the earlier try, re-verifying %d error rows", where,
                len(samples) - len(redo), len(redo))
    fresh = verify_rows(verifier, problems, [samples[i] for i in redo], where, item_fields) if redo else []
    out = [dict(p) for p in previous]
    for i, row in zip(redo, fresh, strict=True):
        out[i] = row
    return out


def verdict_stage(
    rd: Any, iteration: int, stage: str, path: str, samples: Sequence[dict[str, Any]], problem_set: Any,
    max_error_rate: float, annotate: Any = None,
) -> list[dict[str, Any]]:
    """The verdicts stage of ``samples`` (``rd.stage_rows``). Past ``max_error_rate`` errors the verdicts
    are written but the stage is not marked, and :class:`VerifierOutage` stops the run."""
    import time

    from rest_em.rundir import read_rows
    from verifiers.io import write_jsonl_atomic

    file = rd.iter_dir(iteration) / path

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        start = time.monotonic()
        previous = read_rows(file) if file.exists() else None  # left by a try an outage stopped
        verdicts = verdicts_with_retry(problem_set.verifier.get(), problem_set.by_id(), samples, previous, str(file),
                                       problem_set.verifier.item_fields())
        if annotate is not None:
            annotate(samples, verdicts)
        counts = verdict_counts(verdicts)
        if verdicts and counts["error"] / len(verdicts) > max_error_rate:
            write_jsonl_atomic(file, verdicts)  # kept, unmarked: the rerun re-verifies only the error rows
            reasons: dict[str, int] = {}
            for v in verdicts:
                if v["verdict"] == "error":
                    reasons[v["reason"]] = reasons.get(v["reason"], 0) + 1
            first = next((v.get("message", "") for v in verdicts if v["verdict"] == "error"), "")
            raise VerifierOutage(outage_message(f"{stage} of iteration {iteration}", counts, reasons, first,
                                                max_error_rate))
        return verdicts, {"seconds": time.monotonic() - start, "counts": counts}

    return rd.stage_rows(iteration, stage, path, compute)


@dataclass(frozen=True)
class VerifiedSample:
    """One sample joined with its verdict: what every algorithm's M-step set is built from."""

    problem_id: str
    sample_idx: int
    text: str
    verdict: str  # pass | fail | error
    reason: str | None = None
    iteration: int | None = None
    num_tokens: int | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def join_verdicts(samples: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]], where: str = "samples"
                  ) -> list[VerifiedSample]:
    """Each sample row with its verdict row (joined on ``(problem_id, sample_idx)``), ordered by problem then
    sample. A sample without a verdict is an error that names it: a verdicts file that does not match its
    samples file must never pass silently."""
    verdict_of = {(v["problem_id"], v["sample_idx"]): v for v in verdicts}
    out = []
    for s in samples:
        v = verdict_of.get((s["problem_id"], s["sample_idx"]))
        if v is None:
            raise ValueError(f"{where}: no verdict for sample {s['problem_id']}#{s['sample_idx']}")
        out.append(VerifiedSample(s["problem_id"], s["sample_idx"], s["text"], v["verdict"], v.get("reason"),
                                  s.get("iteration"), s.get("num_tokens")))
    return sorted(out, key=lambda r: (r.problem_id, r.sample_idx))
