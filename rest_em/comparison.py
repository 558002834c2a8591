"""Several runs side by side: one markdown table and one plot (``rest-em compare RUN_DIR...``).

    data = compare_runs([Path("runs/a"), Path("runs/b")])    # ComparisonError when they are not comparable
    text = render_comparison(data)                            # markdown
    plot_comparison(data, Path("compare.png"))

Each run is read from its run directory alone (``rest_em.report.collect`` plus the stage markers), so
unfinished runs show what they have. Runs are comparable when they evaluated the same test problems
with the same evaluation settings: the keys of ``TEST_SET_KEYS`` and ``eval.*`` must agree, and so must
the problem ids of their evaluations; otherwise the comparison is refused, naming the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rest_em.config import config_differences
from rest_em.report import collect, metric_keys
from rest_em.rundir import RunDir, read_rows

# Config keys that decide which test problems a run evaluated and how they were prompted.
TEST_SET_KEYS = ("task.name", "task.test_path", "task.hub_name", "task.num_test", "task.levels", "task.level_weights",
                 "task.seed", "task.extraction", "task.transfer", "model.prompt_style")

# Stage markers -> the wall-time columns they are summed into.
STAGE_GROUPS = {
    "E-step": ("samples", "verdicts"),
    "M-step": ("filter", "dataset", "sft_train", "train"),
    "eval": ("eval_samples", "eval_verdicts", "eval", "transfer_samples", "transfer_verdicts", "transfer"),
}


class ComparisonError(ValueError):
    """Runs that cannot be compared (different test sets or evaluation settings), or not run directories."""


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in TEST_SET_KEYS:
        out[key] = _get(cfg, key)
    out["eval"] = cfg.get("eval", {})
    return out


def _eval_problem_ids(run_dir: Path) -> set[str] | None:
    rd = RunDir(run_dir)
    for t in rd.iterations():
        path = rd.iter_dir(t) / "eval" / "samples.jsonl"
        if rd.done(t, "eval_samples") and path.exists():
            return {r["problem_id"] for r in read_rows(path)}
    return None


def stage_seconds(run_dir: Path, iteration: int) -> dict[str, float | None]:
    rd = RunDir(run_dir)
    out: dict[str, float | None] = {}
    for group, stages in STAGE_GROUPS.items():
        secs = [(rd.info(iteration, s) or {}).get("seconds") for s in stages if rd.done(iteration, s)]
        secs = [s for s in secs if s is not None]
        out[group] = sum(secs) if secs else None
    return out


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """Every run's report data plus its stage times; refuses runs that are not comparable."""
    if len(run_dirs) < 1:
        raise ComparisonError("give at least one run directory")
    runs = []
    for d in run_dirs:
        d = Path(d)
        if not (d / "config.yaml").exists():
            raise ComparisonError(f"{d} is not a run directory (no config.yaml)")
        cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}
        cfg.pop("meta", None)
        runs.append({"dir": d, "config": cfg, "report": collect(d), "problems": _eval_problem_ids(d)})
    first = runs[0]
    problems = []
    for r in runs[1:]:
        diffs = config_differences(_settings(first["config"]), _settings(r["config"]))
        if diffs:
            raise ComparisonError(f"{first['dir']} and {r['dir']} differ in their test set or evaluation settings "
                                  f"({first['dir'].name} -> {r['dir'].name}):\n  " + "\n  ".join(diffs))
        if first["problems"] is not None and r["problems"] is not None and first["problems"] != r["problems"]:
            only_a, only_b = sorted(first["problems"] - r["problems"]), sorted(r["problems"] - first["problems"])
            problems.append(f"{first['dir']} and {r['dir']} evaluated different test problems (only in the first: "
                            f"{only_a[:3]}{'...' if len(only_a) > 3 else ''}; only in the second: {only_b[:3]}"
                            f"{'...' if len(only_b) > 3 else ''})")
    if problems:
        raise ComparisonError("\n".join(problems))
    names = [r["report"]["run"] or r["dir"].name for r in runs]
    for r, name in zip(runs, names):
        r["label"] = name if names.count(name) == 1 else str(r["dir"])
        for e in r["report"]["iterations"]:
            e["seconds"] = stage_seconds(r["dir"], e["iteration"])
    return {"runs": runs, "keys": metric_keys(first["report"]), "task": first["report"]["task"],
            "eval": first["config"].get("eval", {}), "num_test": len(first["problems"] or [])}


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _s(x: Any) -> str:
    return "—" if x is None else f"{x:.0f}"


def render_comparison(data: dict[str, Any]) -> str:
    keys, ev = data["keys"], data["eval"]
    how = f"greedy pass@1 and {ev.get('n')} samples per problem at temperature {ev.get('temperature')}, top-p " \
          f"{ev.get('top_p')}" if ev.get("n") else "greedy pass@1"
    lines = [f"# Comparison of {len(data['runs'])} runs", "",
             f"Task `{data['task']}`, {data['num_test']} test problems, {how}. Metrics in percent on the test split; "
             "iteration 0 is the base model. Train coverage: share of train problems with a correct E-step sample; "
             "train rows: what the M-step trained on (SFT rows or DPO pairs). Wall time in seconds per stage "
             "(E-step = sampling + verification; M-step = filter, dataset and training; eval = test and transfer).",
             "", "| run | algorithm | iter | " + " | ".join(keys) + " | train coverage | train rows "
             "| E-step s | M-step s | eval s |", "|" + "---|" * (len(keys) + 8)]
    for r in data["runs"]:
        rep = r["report"]
        for e in rep["iterations"]:
            m, ts, sec = e["eval"] or {}, e["train_set"], e["seconds"]
            lines.append(f"| {r['label']} | {rep.get('algorithm', 'rest_em')} | {e['iteration']} | "
                         + " | ".join(_pct(m.get(k)) for k in keys)
                         + f" | {_pct(ts['coverage']) if ts else '—'} | {ts['sft_size'] if ts else '—'}"
                         + f" | {_s(sec['E-step'])} | {_s(sec['M-step'])} | {_s(sec['eval'])} |")
    lines += ["", "## Per level (test split)", "", "| run | iter | level | problems | " + " | ".join(keys) + " |",
              "|" + "---|" * (len(keys) + 4)]
    for r in data["runs"]:
        for e in r["report"]["iterations"]:
            for level, m in ((e["eval"] or {}).get("by_level") or {}).items():
                lines.append(f"| {r['label']} | {e['iteration']} | {level} | {m['num_problems']} | "
                             + " | ".join(_pct(m.get(k)) for k in keys) + " |")
    lines += ["", "## Wall time per run (seconds, all iterations)", "",
              "| run | algorithm | E-step | M-step | eval | total |", "|---|---|---|---|---|---|"]
    for r in data["runs"]:
        tot = {g: sum(e["seconds"][g] or 0.0 for e in r["report"]["iterations"]) for g in STAGE_GROUPS}
        lines.append(f"| {r['label']} | {r['report'].get('algorithm', 'rest_em')} | "
                     + " | ".join(_s(tot[g]) for g in STAGE_GROUPS) + f" | {_s(sum(tot.values()))} |")
    return "\n".join(lines) + "\n"


def plot_comparison(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = data["keys"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for r in data["runs"]:
            pts = [(e["iteration"], 100 * e["eval"][key]) for e in r["report"]["iterations"]
                   if e.get("eval") and e["eval"].get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), "-o", label=r["label"])
        ax.set_title(key)
        ax.set_xlabel("iteration (0 = base model)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("percent (test split)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{data['task']}: {len(data['runs'])} runs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
