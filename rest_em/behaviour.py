"""maj@k for code: programs vote by what they do (AlphaCode, Li et al. 2022; CodeT, Chen et al. 2022).

    rows = behaviour_stage(rd, iteration, test, samples, verdicts, maj_k)   # iter_NN/<set>/behaviour.jsonl
    add_behaviour_answers(verdicts, rows)                                   # v["answer"]: the program's behaviour

The first ``maj_k`` sampled programs of a problem are run in the sandbox on the problem's test
**inputs**; a program's behaviour is its outputs on them (stdio: stdout tokens; call: return values as
plain data). The expected outputs are never looked at: voting needs no verdict. Programs with the
same outputs on every input form one group; ``rest_em.metrics`` then votes as for math: the largest
group wins, ties go to the group whose first member was sampled first, and the problem is solved when
that group's first program passed its tests. Programs that crash, time out, hit a limit or have no
code do not vote (``answer: None``), like math samples with no extractable answer.

Which inputs: the problem's own test inputs, with their expected outputs withheld (``INPUTS``). The
embedded code task has no public examples apart from its tests; APPS problems show examples in their
statement text, not as data. So the vote sees the inputs the tests use (not what they expect), which
is what a generated-input variant (CodeT) approximates; the report says so. Test styles whose inputs
live inside test code (``humaneval``, ``assert``) have no inputs to run: a set with such problems gets
no maj@k (``votes_by_behaviour`` says which sets can).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any, Sequence

from rest_em.problem_sets import ProblemSet
from rest_em.rundir import RunDir

logger = logging.getLogger(__name__)

INPUTS = "the problem's test inputs, expected outputs withheld (no public tests are given as data)"


def votes_by_behaviour(test: ProblemSet) -> bool:
    """Every problem of ``test`` has inputs of its own to run programs on (stdio or call tests)."""
    return bool(test.problems) and all((p.payload or {}).get("tests", {}).get("style") in ("stdio", "call")
                                       for p in test.problems)


def behaviour_stage(rd: RunDir, iteration: int, test: ProblemSet, samples: Sequence[dict[str, Any]],
                    verdicts: Sequence[dict[str, Any]], maj_k: int) -> list[dict[str, Any]]:
    """Behaviour rows ``{problem_id, sample_idx, behaviour, reason}`` of the first ``maj_k`` sampled programs
    of each problem (resumable stage ``<set>_behaviour``). ``behaviour`` is a JSON list of outputs, or None."""
    name = test.name

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        start = time.monotonic()
        verifier = test.verifier.get()
        if not hasattr(verifier, "behaviour_batch"):
            raise RuntimeError(f"maj@{maj_k} for code runs programs on their inputs, which this verifier "
                               f"({type(verifier).__name__}) cannot do; set eval.maj_k: 0 or verify in-process")
        error_keys = {(v["problem_id"], v["sample_idx"]) for v in verdicts if v.get("mode") == "sampled" and v["verdict"] == "error"}
        problems = test.by_id()
        chosen = [r for r in samples if r.get("mode") == "sampled" and r["sample_idx"] < maj_k
                  and (r["problem_id"], r["sample_idx"]) not in error_keys]
        items = [verifier.parse_item(problems[r["problem_id"]].verifier_row(r["text"], r["sample_idx"]),
                                     where=f"{name} behaviour {r['problem_id']}:{r['sample_idx']}") for r in chosen]
        results = verifier.behaviour_batch(items)
        rows = [{"problem_id": r["problem_id"], "sample_idx": r["sample_idx"], "mode": "sampled",
                 "behaviour": None if out is None else json.dumps(list(out)), "reason": why}
                for r, (out, why) in zip(chosen, results, strict=True)]
        reasons = Counter(row["reason"] for row in rows)
        info = {"seconds": time.monotonic() - start, "programs_run": len(rows),
                "voting": sum(row["behaviour"] is not None for row in rows), "reasons": dict(reasons), "inputs": INPUTS}
        logger.info("%s %d behaviour: %s", name, iteration, info)
        return rows, info

    return rd.stage_rows(iteration, f"{name}_behaviour", f"{name}/behaviour.jsonl", compute)


def add_behaviour_answers(verdicts: Sequence[dict[str, Any]], behaviour: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the verdict rows where each sampled program's ``answer`` is its behaviour (None: no vote)."""
    by_key = {(b["problem_id"], b["sample_idx"]): b["behaviour"] for b in behaviour}
    return [{**v, "answer": by_key.get((v["problem_id"], v["sample_idx"]))} if v.get("mode") == "sampled" else v
            for v in verdicts]
