"""The report: report.md / report.json / metrics.png written from a run directory, base model first,
skipped M-steps and verifier errors shown, and `rest-em report RUN_DIR` regenerating them."""

from __future__ import annotations

import json
from pathlib import Path

from rest_em.config import load_config
from rest_em.metrics import EvalRecord, compute_metrics
from rest_em.report import write_report
from rest_em.rundir import RunDir
from verifiers.io import write_text_atomic


def fake_run(tmp_path: Path) -> Path:
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=r", "eval.n=2", "eval.k_list=[1,2]",
                             "eval.maj_k=2", "task.transfer.name=gsm8k"])
    rd = RunDir.open(cfg)
    same = lambda pairs: [a == b for a, b in pairs]  # noqa: E731
    # Iteration 0 (base): 1 of 4 greedy right; 1: skipped M-step; 2: trained, better, one verifier error.
    greedy = {0: ["pass", "fail", "fail", "fail"], 1: ["pass", "fail", "fail", "fail"], 2: ["pass", "pass", "pass", "error"]}
    for t, g in greedy.items():
        recs = [EvalRecord(f"p{i}", 1 + i % 2, greedy=v, samples=[(v, "1"), ("fail", "2")]) for i, v in enumerate(g)]
        for name in ("eval", "transfer"):
            write_text_atomic(rd.iter_dir(t) / name / "metrics.json", json.dumps(compute_metrics(recs, [1, 2], 2, same)))
        rd.mark(t, "eval_samples", {"seconds": 12.0, "tokens_per_s": 300.0})
        if t:
            rd.mark(t, "samples", {"seconds": 30.0, "tokens_per_s": 250.0})
            rd.mark(t, "filter", {"coverage": 0.25 * t, "problems_with_pass": t, "num_problems": 4, "num_kept": 3 * (t - 1),
                                  "verdicts": {"pass": 3 * (t - 1), "fail": 10, "error": t}, "error_reasons": {"verifier_crashed": t},
                                  "duplicates_dropped": 0, "capped_dropped": 0})
    rd.mark(1, "train", {"skipped": True, "reason": "no correct samples", "seconds": 0.0})
    rd.mark(2, "train", {"skipped": False, "seconds": 95.0, "tokens_per_s": 800.0})
    return rd.root


def test_report_files_and_rows(tmp_path):
    root = fake_run(tmp_path)
    md_path = write_report(root)
    assert md_path == root / "report.md"
    md = md_path.read_text()
    data = json.loads((root / "report.json").read_text())
    png = (root / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert [e["iteration"] for e in data["iterations"]] == [0, 1, 2]
    assert data["iterations"][0]["policy"] == "base model"
    assert data["iterations"][1]["policy"] == "base model (M-step skipped)"
    assert data["iterations"][2]["eval"]["greedy_pass@1"] == 1.0  # the error is left out, not counted as a fail
    assert data["iterations"][2]["train_set"]["verdicts"]["error"] == 2

    table = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:6] == ["iter", "policy", "greedy_pass@1", "pass@1", "pass@2", "maj@2"]
    first = [c.strip() for c in table[1].strip("|").split("|")]
    assert first[:2] == ["0", "base model"] and first[2].startswith("25.0 [")  # the base model is the first row
    row2 = [c.strip() for c in table[3].strip("|").split("|")]
    assert row2[0] == "2" and row2[header.index("eval errors")] == "2"
    assert row2[header.index("E-step pass/fail/error")] == "3/10/2"
    assert row2[header.index("M-step")] == "95 s (800 tok/s)"
    assert "## Per level" in md and "## Transfer set: `gsm8k`" in md
    assert "M-step skipped (no correct samples)" in md


def test_report_command_regenerates(tmp_path, capsys):
    from rest_em.cli import main

    root = fake_run(tmp_path)
    assert main(["report", str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"report is at {root / 'report.md'}"
    assert (root / "report.json").exists() and (root / "metrics.png").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_the_report_counts_how_answers_were_extracted(tmp_path):
    from rest_em.report import _extracted_by, _extraction_lines

    d = tmp_path / "iter_01" / "eval"
    d.mkdir(parents=True)
    rows = [{"problem_id": "a", "sample_idx": 0, "mode": "greedy", "verdict": "pass", "reason": "correct",
             "extracted_by": "last_math"},
            {"problem_id": "b", "sample_idx": 0, "mode": "greedy", "verdict": "fail", "reason": "wrong_answer",
             "extracted_by": "last_boxed"},
            {"problem_id": "c", "sample_idx": 0, "mode": "greedy", "verdict": "fail", "reason": "no_answer"}]
    (d / "verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = _extracted_by(tmp_path, 1)
    assert counts == {"eval": {"last_boxed": 1, "last_math": 1}}
    lines = _extraction_lines({"iterations": [{"iteration": 1, "extracted_by": counts}]})
    assert "| iter | stage | last_boxed | last_math |" in lines and "| 1 | eval | 1 | 1 |" in lines
