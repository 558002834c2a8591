"""rest-em compare: intervals, paired differences between runs, seeds grouped and pooled, the FLOPs axis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rest_em.comparison import ComparisonError, compare_runs, plot_comparison, render_comparison
from rest_em.config import load_config
from rest_em.metrics import EvalRecord, compute_metrics
from rest_em.rundir import RunDir
from verifiers.io import write_text_atomic


def make_run(root: Path, name: str, greedy_by_iter: dict[int, list[bool]], overrides=(), flops_tokens: int = 100) -> Path:
    """A run directory whose test evaluation at iteration t passes greedily exactly the problems marked True."""
    cfg = load_config(None, [f"run.output_dir={root}", f"run.name={name}", "eval.n=2", "eval.k_list=[1]", "eval.maj_k=0",
                             *overrides])
    rd = RunDir.open(cfg)
    for t, passes in greedy_by_iter.items():
        recs = [EvalRecord(f"p{i}", 1, greedy="pass" if ok else "fail", samples=[("pass" if ok else "fail", None)] * 2)
                for i, ok in enumerate(passes)]
        d = rd.iter_dir(t) / "eval"
        write_text_atomic(d / "metrics.json", json.dumps(compute_metrics(recs, [1], None, None)))
        write_text_atomic(d / "samples.jsonl", "".join(json.dumps({"problem_id": f"p{i}", "sample_idx": 0}) + "\n"
                                                       for i in range(len(passes))))
        rd.mark(t, "eval_samples", {"seconds": 1.0, "tokens": flops_tokens})
    return rd.root


def test_a_run_against_itself_differs_by_zero_and_a_planted_difference_is_marked(tmp_path):
    base = [i < 40 for i in range(100)]
    a = make_run(tmp_path, "a", {0: base, 1: base})
    b = make_run(tmp_path, "b", {0: base, 1: [i < 60 for i in range(100)]}, overrides=["algorithm=expert_iteration"])
    data = compare_runs([a, a.parent / "a", b])
    pairs = {(p["a"], p["b"]): p["diffs"]["greedy_pass@1"] for p in data["paired"]}
    same = pairs[(str(a), str(a.parent / "a"))]
    assert same["diff"] == 0.0 and same["interval"] == [0.0, 0.0] and not same["significant"]
    planted = pairs[(str(a), "b")]
    assert planted["diff"] == pytest.approx(0.2) and planted["significant"]
    text = render_comparison(data)
    assert "+20.0 [" in text and "\\*" in text
    assert "40.0 [" in text  # the figures carry their intervals


def test_seeds_are_grouped_with_their_spread_and_pooled_for_the_paired_interval(tmp_path):
    runs = []
    for s, solved in enumerate((50, 54, 46)):
        runs.append(make_run(tmp_path, f"rest-seed{s}", {0: [i < 30 for i in range(100)], 1: [i < solved for i in range(100)]},
                             overrides=[f"sampling.seed={s}", f"training.seed={s}", f"filter.seed={s}"]))
    other = make_run(tmp_path, "ei", {0: [i < 30 for i in range(100)], 1: [i < 30 for i in range(100)]},
                     overrides=["algorithm=expert_iteration"])
    data = compare_runs([*runs, other])
    groups = {g["label"]: g for g in data["groups"]}
    g = groups["rest-seed (3 seeds)"]
    assert len(g["runs"]) == 3 and groups["ei"]["runs"][0]["label"] == "ei"
    final = g["by_iteration"][1]["greedy_pass@1"]
    assert final["mean"] == pytest.approx(0.50) and final["min"] == 0.46 and final["max"] == 0.54
    assert final["sd"] == pytest.approx(0.04) and final["seeds"] == 3
    pooled = next(p for p in data["paired"] if p["a"] == "rest-seed (3 seeds)" and p["b"] == "ei")["diffs"]["greedy_pass@1"]
    assert pooled["diff"] == pytest.approx(-0.20) and pooled["significant"] and pooled["num_problems"] == 100
    text = render_comparison(data)
    assert "### Across seeds" in text and "50.0 (46.0-54.0, SD 4.0)" in text


def test_plot_colours_runs_by_seed_group_and_marks_each_seed(tmp_path):
    from rest_em.comparison import plot_styles

    solved = [i < 5 for i in range(10)]
    runs = [make_run(tmp_path, f"{algo}-seed{s}", {0: solved}, overrides=[f"algorithm={algo}", f"sampling.seed={s}",
                                                                          f"training.seed={s}", f"filter.seed={s}"])
            for algo in ("rest_em", "expert_iteration", "sft") for s in (10, 0, 2)]  # 9 runs, seeds out of order
    singles = [make_run(tmp_path, f"dpo-{i}", {0: solved}, overrides=["algorithm=dpo", f"dpo.beta={0.1 * (i + 1)}"])
               for i in range(3)]  # 3 configs of one run each
    data = compare_runs([*runs, *singles])
    styles = plot_styles(data)
    assert len(styles) == 12
    for algo in ("rest_em", "expert_iteration", "sft"):
        mine = [styles[f"{algo}-seed{s}"] for s in (0, 2, 10)]
        assert len({c for c, _ in mine}) == 1  # one colour per config
        assert [m for _, m in mine] == ["o", "s", "D"]  # one marker per seed, in numeric seed order
    colours = [styles[f"{a}-seed0"][0] for a in ("rest_em", "expert_iteration", "sft")] + \
              [styles[f"dpo-{i}"][0] for i in range(3)]
    assert len(set(colours)) == 6  # six configs, six colours (12 runs would have wrapped the old 10-colour cycle)
    plot_comparison(data, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_compare_refuses_different_test_problems(tmp_path):
    a = make_run(tmp_path, "a", {0: [True] * 4})
    b = make_run(tmp_path, "b", {0: [True] * 5})
    with pytest.raises(ComparisonError, match="different test problems"):
        compare_runs([a, b])


def test_plot_against_flops(tmp_path):
    a = make_run(tmp_path, "a", {0: [True, False], 1: [True, True]}, flops_tokens=1000)
    b = make_run(tmp_path, "b", {0: [True, False], 1: [False, True]}, overrides=["training.seed=3"])
    data = compare_runs([a, b])
    flops = [e["compute"]["cumulative_flops"] for e in data["runs"][0]["report"]["iterations"]]
    n = data["runs"][0]["report"]["model_parameters"]["count"]
    if n is None:
        pytest.skip("the default model is not on this machine: no parameter count, no FLOPs axis")
    assert flops == [2 * n * 1000, 4 * n * 1000]
    plot_comparison(data, tmp_path / "c.png", x="flops")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ComparisonError, match="unknown x axis"):
        plot_comparison(data, tmp_path / "d.png", x="tokens")


def test_compare_command_x_flops(tmp_path, capsys):
    from rest_em.cli import main

    a = make_run(tmp_path, "a", {0: [True, False]})
    assert main(["compare", str(a), "--x", "flops", "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists() and "## Uncertainty" in capsys.readouterr().out


def test_iterate_seeds_runs_sibling_directories_with_the_same_test_problems(tmp_path, monkeypatch, capsys):
    from rest_em import loop
    from rest_em.cli import main

    seen = []

    def fake_run(cfg):
        seen.append(cfg)
        return cfg.run_dir() / "report.md"

    monkeypatch.setattr(loop, "run", fake_run)
    assert main(["iterate", "--seeds", "3", f"run.output_dir={tmp_path}", "run.name=x", "sampling.seed=5"]) == 0
    assert [c.run.name for c in seen] == ["x-seed0", "x-seed1", "x-seed2"]
    assert [(c.sampling.seed, c.filter.seed, c.training.seed) for c in seen] == [(5, 0, 0), (6, 1, 1), (7, 2, 2)]
    assert len({(c.task.seed, c.task.num_test, c.eval.seed) for c in seen}) == 1  # same test problems, same evaluation
    assert main(["iterate", "--seeds", "0"]) == 2
