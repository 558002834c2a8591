"""Evaluation metrics (pure Python): pass@k, maj@k and greedy pass@1, overall and per level.

    records = [EvalRecord("p1", level=1, greedy="pass", samples=[("pass", "4"), ("fail", "5"), ...]), ...]
    m = compute_metrics(records, k_list=[1, 4], maj_k=4, equivalent=verifier.equivalent_batch)
    m["pass@4"], m["maj@4"], m["greedy_pass@1"], m["by_level"]["1"]["pass@4"]

**pass@k** is the unbiased estimator of Chen et al. (2021): with ``n`` samples of which ``c`` pass,
``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` (no huge binomials).

**maj@k** votes over the final answers of the first ``k`` samples (lowest ``sample_idx``). Answers
are grouped by the verifier's equivalence (``equivalent([(a, b), ...]) -> [bool]``), each answer
joining the first earlier group whose representative it is equivalent to. The largest group wins.
**Tie rule: among groups of equal size, the group whose first member has the lowest sample index
wins** (the earliest-sampled answer). The problem counts as solved when the winning group's first
sample passed. Samples with no extractable answer do not vote; a problem where nobody votes is not
solved.

**Verifier errors** (``error`` verdicts: our side broke, e.g. an unparseable reference) are neither
pass nor fail: such samples are left out (``n`` counts pass + fail only), a problem with fewer than
``k`` valid samples is left out of pass@k (counted under ``excluded``), and a problem whose greedy
verdict is an error is left out of greedy pass@1. Every metric reports how many problems it covers.

**Per-problem values** (``per_problem``: one row per problem, ``{problem_id, level, greedy_pass@1,
pass@k, maj@k}``, ``None`` where left out) are what every metric averages; ``rest_em.intervals``
resamples them for the report's intervals and paired differences.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

Equivalent = Callable[[Sequence[tuple[str, str]]], list[bool]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``n`` samples with ``c`` correct (Chen et al. 2021, stable product form)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@dataclass
class EvalRecord:
    problem_id: str
    level: int | None
    greedy: str | None = None  # greedy verdict: pass | fail | error | None (no greedy run)
    samples: list[tuple[str, str | None]] = field(default_factory=list)  # (verdict, answer) by sample_idx


def majority_groups(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> list[list[int]]:
    """Indices of ``answers`` grouped by equivalence, groups in order of their first member.

    ``None`` answers (nothing extracted) are in no group. Each answer joins the first group whose
    representative (first member) it is equivalent to.
    """
    groups: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        for g in groups:
            if same(answers[g[0]], a):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def majority_winner(groups: list[list[int]]) -> list[int] | None:
    """The largest group; ties go to the group whose first member has the lowest index."""
    best: list[int] | None = None
    for g in groups:  # groups are ordered by first member, so ">" keeps the earliest on ties
        if best is None or len(g) > len(best):
            best = g
    return best


def _equivalence_table(records: Sequence[EvalRecord], maj_k: int, equivalent: Equivalent | None) -> dict[tuple[str, str], bool]:
    """Every distinct pair of distinct answers within a problem's voters, decided in one batch."""
    pairs: set[tuple[str, str]] = set()
    for r in records:
        distinct = sorted({a.strip() for v, a in r.samples[:maj_k] if a is not None and v != "error"})
        pairs.update((a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :])
    ordered = sorted(pairs)
    if not ordered:
        return {}
    if equivalent is None:
        return {p: False for p in ordered}
    return dict(zip(ordered, equivalent(ordered)))


def compute_metrics(
    records: Sequence[EvalRecord], k_list: Sequence[int], maj_k: int | None, equivalent: Equivalent | None
) -> dict:
    """Overall metrics plus ``by_level`` and ``per_problem``; ``maj_k`` None skips maj@k."""
    table = _equivalence_table(records, maj_k, equivalent) if maj_k else {}

    def same(a: str, b: str) -> bool:
        a, b = a.strip(), b.strip()
        return a == b or table.get((min(a, b), max(a, b)), False)

    per_problem: list[tuple[EvalRecord, dict[str, float | None]]] = []
    for r in records:
        row: dict[str, float | None] = {}
        valid = [v for v, _ in r.samples if v != "error"]
        for k in k_list:
            row[f"pass@{k}"] = pass_at_k(len(valid), valid.count("pass"), k) if len(valid) >= k else None
        if maj_k:
            voters = [(v, a) for v, a in r.samples[:maj_k] if v != "error"]
            winner = majority_winner(majority_groups([a for _, a in voters], same))
            row[f"maj@{maj_k}"] = (1.0 if voters[winner[0]][0] == "pass" else 0.0) if winner else 0.0
            if len(r.samples) < maj_k:
                row[f"maj@{maj_k}"] = None
        if r.greedy is not None:
            row["greedy_pass@1"] = None if r.greedy == "error" else float(r.greedy == "pass")
        per_problem.append((r, row))

    def summarize(rows: list[dict[str, float | None]]) -> dict:
        out: dict = {"num_problems": len(rows)}
        keys = [k for k in dict.fromkeys(key for row in rows for key in row)]
        for key in keys:
            vals = [row[key] for row in rows if row.get(key) is not None]
            out[key] = sum(vals) / len(vals) if vals else None
            if len(vals) < len(rows):
                out.setdefault("excluded", {})[key] = len(rows) - len(vals)
        return out

    by_level: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for r, row in per_problem:
        by_level["?" if r.level is None else str(r.level)].append(row)
    result = summarize([row for _, row in per_problem])
    result["by_level"] = {lv: summarize(rows) for lv, rows in sorted(by_level.items(), key=lambda kv: _level_key(kv[0]))}
    result["verdicts"] = _verdict_counts(records)
    result["per_problem"] = [{"problem_id": r.problem_id, "level": r.level, **row} for r, row in per_problem]
    return result


def _level_key(level: str) -> tuple[int, int, str]:
    return (0, int(level), "") if level.isdigit() else (1, 0, level)


def _verdict_counts(records: Sequence[EvalRecord]) -> dict[str, dict[str, int]]:
    greedy = {"pass": 0, "fail": 0, "error": 0}
    sampled = {"pass": 0, "fail": 0, "error": 0}
    for r in records:
        if r.greedy is not None:
            greedy[r.greedy] += 1
        for v, _ in r.samples:
            sampled[v] += 1
    return {"greedy": greedy, "sampled": sampled}


# --- verdict reasons (code reports count why samples failed) ---------------------------------


def reason_counts(verdicts: Sequence[dict]) -> dict[str, dict[str, int]]:
    """Verdict rows counted by outcome and reason: ``{"fail": {"wrong_answer": 7, "timeout": 1}, ...}``."""
    out: dict[str, dict[str, int]] = {}
    for v in verdicts:
        bucket = out.setdefault(v["verdict"], {})
        reason = v.get("reason") or "unknown"
        bucket[reason] = bucket.get(reason, 0) + 1
    return {o: dict(sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))) for o, r in sorted(out.items())}
