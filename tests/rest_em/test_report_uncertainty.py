"""The report's intervals, paired differences between iterations, and compute accounting."""

from __future__ import annotations

import json
import struct

from test_report import fake_run

from rest_em.compute import safetensors_parameters
from rest_em.intervals import RESAMPLES
from rest_em.report import collect, write_report
from rest_em.rundir import RunDir


def test_report_json_has_intervals_overall_and_per_level(tmp_path):
    root = fake_run(tmp_path)
    write_report(root)
    data = json.loads((root / "report.json").read_text())
    assert data["intervals_method"]["resamples"] == RESAMPLES >= 1000 and data["intervals_method"]["seed"] == 0
    ev = data["iterations"][0]["eval"]
    lo, hi = ev["intervals"]["greedy_pass@1"]
    assert 0.0 <= lo <= ev["greedy_pass@1"] == 0.25 <= hi <= 1.0  # the metric's own units
    assert set(ev["intervals"]) == {"greedy_pass@1", "pass@1", "pass@2", "maj@2"}
    for level, row in ev["by_level"].items():
        lo, hi = row["intervals"]["greedy_pass@1"]
        assert lo <= row["greedy_pass@1"] <= hi
    md = (root / "report.md").read_text()
    assert "expanded percentile bootstrap over test problems, 2000 resamples, seed 0" in md


def test_paired_differences_against_iteration_0_and_the_previous_one(tmp_path):
    root = fake_run(tmp_path)
    data = collect(root)
    it = {e["iteration"]: e for e in data["iterations"]}
    assert it[0]["paired"] == {}
    # iteration 1 evaluated exactly what iteration 0 did: a difference of exactly 0
    assert it[1]["paired"]["vs_iteration_0"]["greedy_pass@1"] == {"diff": 0.0, "interval": [0.0, 0.0], "significant": False,
                                                                 "num_problems": 4}
    assert "vs_previous" not in it[1]["paired"]  # the previous one is iteration 0
    # iteration 2: p1 and p2 now pass, p3 errored (left out): +2 of 3 problems
    d = it[2]["paired"]["vs_previous"]["greedy_pass@1"]
    assert d["num_problems"] == 3 and abs(d["diff"] - 2 / 3) < 1e-12
    md = write_report(root).read_text()
    assert "| 2 | iteration 1 |" in md and "| 1 | iteration 0 | +0.0 [+0.0, +0.0]" in md


def test_intervals_for_runs_written_before_per_problem_values(tmp_path):
    """Old metrics.json (no per_problem): greedy and pass@k intervals come from verdicts.jsonl."""
    root = fake_run(tmp_path)
    rd = RunDir(root)
    path = rd.iter_dir(0) / "eval" / "metrics.json"
    m = json.loads(path.read_text())
    del m["per_problem"]
    path.write_text(json.dumps(m))
    rows = [{"problem_id": f"p{i}", "sample_idx": 0, "mode": "greedy", "verdict": "pass" if i == 0 else "fail"} for i in range(4)]
    rows += [{"problem_id": f"p{i}", "sample_idx": j, "mode": "sampled", "verdict": "fail"} for i in range(4) for j in range(2)]
    (rd.iter_dir(0) / "eval" / "verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = collect(root)["iterations"][0]["eval"]
    assert ev["per_problem_rebuilt_from_verdicts"] and ev["intervals"]["pass@2"] == [0.0, 0.0]
    assert ev["intervals"]["greedy_pass@1"][0] <= 0.25 <= ev["intervals"]["greedy_pass@1"][1]
    assert "maj@2" not in ev["intervals"]


def _safetensors(path, shapes):
    header = json.dumps({"__metadata__": {"format": "pt"},
                         **{f"t{i}": {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for i, s in enumerate(shapes)}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_compute_accounting_per_iteration(tmp_path):
    root = fake_run(tmp_path)
    rd = RunDir(root)
    ckpt = rd.iter_dir(2) / "checkpoint"
    ckpt.mkdir(parents=True)
    _safetensors(ckpt / "model.safetensors", [[10, 20], [5]])  # N = 205
    rd.mark(2, "samples", {"seconds": 30.0, "tokens": 1000})
    rd.mark(2, "eval_samples", {"seconds": 12.0, "tokens": 300})
    rd.mark(2, "verdicts", {"seconds": 3.0, "counts": {"pass": 3, "fail": 10, "error": 2}})
    rd.mark(2, "eval_verdicts", {"seconds": 1.0, "counts": {"pass": 4, "fail": 8, "error": 0}})
    rd.mark(2, "eval_behaviour", {"seconds": 2.5, "programs_run": 8})
    rd.mark(2, "train", {"skipped": False, "seconds": 95.0, "tokens_per_s": 800.0, "tokens_trained": 5000,
                         "supervised_tokens_trained": 2000})
    data = collect(root)
    assert data["model_parameters"] == {"count": 205, "from": "iter_02/checkpoint"}
    c = data["iterations"][2]["compute"]
    assert c["tokens_sampled_estep"] == 1000 and c["tokens_sampled_eval"] == 300
    assert c["tokens_trained"] == 5000 and c["supervised_tokens_trained"] == 2000
    assert c["verifier_calls"] == 27
    assert c["flops"] == 2 * 205 * 1300 + 6 * 205 * 5000
    assert c["seconds"]["train"] == 95.0 and c["seconds"]["samples"] == 30.0 and c["seconds"]["eval_behaviour"] == 2.5
    assert data["iterations"][1]["compute"]["tokens_trained"] is None  # skipped M-step trained nothing
    assert c["cumulative_flops"] == sum(e["compute"]["flops"] or 0 for e in data["iterations"])
    md = write_report(root).read_text()
    assert "## Compute" in md and "205 parameters" in md


def test_compute_estimates_tokens_of_old_markers(tmp_path):
    root = fake_run(tmp_path)  # iteration 2's train marker has tokens_per_s and seconds only
    c = collect(root)["iterations"][2]["compute"]
    assert c["tokens_trained"] == 800 * 95 and c["tokens_trained_estimated"] and c["supervised_tokens_trained"] is None


def test_safetensors_parameters_sums_every_file(tmp_path):
    _safetensors(tmp_path / "model-00001-of-00002.safetensors", [[3, 4]])
    _safetensors(tmp_path / "model-00002-of-00002.safetensors", [[2], [1, 1, 5]])
    assert safetensors_parameters(tmp_path) == 12 + 2 + 5
    assert safetensors_parameters(tmp_path / "none") is None
