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
    "eval": ("eval_samples", "eval_verdicts", "eval_behaviour", "eval", "transfer_samples", "transfer_verdicts",
             "transfer_behaviour", "transfer"),
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
    data = {"runs": runs, "keys": metric_keys(first["report"]), "task": first["report"]["task"],
            "eval": first["config"].get("eval", {}), "num_test": len(first["problems"] or [])}
    add_seed_groups(data)  # runs of one config by seed, and paired differences between runs (or seed groups)
    return data


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
                         + " | ".join(_pct_ci(m, k) for k in keys)
                         + f" | {_pct(ts['coverage']) if ts else '—'} | {ts['sft_size'] if ts else (e.get('dataset') or {}).get('num_rows', '—')}"
                         + f" | {_s(sec['E-step'])} | {_s(sec['M-step'])} | {_s(sec['eval'])} |")
    lines += ["", "## Per level (test split)", "", "| run | iter | level | problems | " + " | ".join(keys) + " |",
              "|" + "---|" * (len(keys) + 4)]
    for r in data["runs"]:
        for e in r["report"]["iterations"]:
            for level, m in ((e["eval"] or {}).get("by_level") or {}).items():
                lines.append(f"| {r['label']} | {e['iteration']} | {level} | {m['num_problems']} | "
                             + " | ".join(_pct_ci(m, k) for k in keys) + " |")
    lines += uncertainty_lines(data)
    lines += ["", "## Wall time per run (seconds, all iterations)", "",
              "| run | algorithm | E-step | M-step | eval | total |", "|---|---|---|---|---|---|"]
    for r in data["runs"]:
        tot = {g: sum(e["seconds"][g] or 0.0 for e in r["report"]["iterations"]) for g in STAGE_GROUPS}
        lines.append(f"| {r['label']} | {r['report'].get('algorithm', 'rest_em')} | "
                     + " | ".join(_s(tot[g]) for g in STAGE_GROUPS) + f" | {_s(sum(tot.values()))} |")
    return "\n".join(lines) + "\n"


def plot_comparison(data: dict[str, Any], path: Path, x: str = "iteration") -> None:
    """One panel per metric; ``x="flops"`` puts each evaluation at the run's cumulative FLOPs estimate
    (rest_em/compute.py) instead of its iteration, so runs are compared at equal compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if x not in X_AXES:
        raise ComparisonError(f"unknown x axis {x!r}; choose one of {', '.join(X_AXES)}")
    keys = data["keys"]
    styles = plot_styles(data)
    legend_width = 0.35 + 0.075 * max(len(r["label"]) for r in data["runs"])  # inches, beside the panels
    width = 4 * len(keys) + legend_width
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for r in data["runs"]:
            pts = [(_x_of(e, x), 100 * e["eval"][key], _err(e["eval"], key)) for e in r["report"]["iterations"]
                   if e.get("eval") and e["eval"].get(key) is not None and _x_of(e, x) is not None]
            if pts:
                xs, ys, errs = zip(*pts)
                colour, marker = styles[r["label"]]
                ax.errorbar(xs, ys, yerr=list(zip(*errs)), fmt="-", marker=marker, color=colour, label=r["label"],
                            capsize=3, elinewidth=0.8, alpha=0.85)
        ax.set_title(key)
        ax.set_xlabel(X_AXES[x])
        if x == "flops" and ax.has_data() and all(v > 0 for line in ax.get_lines() for v in line.get_xdata()):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("percent (test split; bars: 95% interval)")
    handles: dict[str, Any] = {}
    for ax in axes[0]:  # a run may have no point on some panel
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    labels = [lab for lab in styles if lab in handles]  # styles' order: group by group
    fig.legend([handles[lab] for lab in labels], labels, loc="center right", fontsize=8, frameon=False)
    grouped = any(len(g["runs"]) > 1 for g in data.get("groups", []))
    fig.suptitle(f"{data['task']}: {len(data['runs'])} runs"
                 + ("; one colour per config, one marker per seed" if grouped else ""))
    fig.tight_layout(rect=(0, 0, 1 - legend_width / width, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


# --- intervals, paired differences, seeds (rest_em/intervals.py) ------------------------------

X_AXES = {"iteration": "iteration (0 = base model)",
          "flops": "cumulative FLOPs (estimate)"}
# Config keys that only seed a run (and its name): runs that differ in nothing else are one config by seed.
SEED_KEYS = ("sampling.seed", "training.seed", "filter.seed", "run.name", "run.output_dir")


MARKERS = "osD^vP*Xph<>"


def plot_styles(data: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each run's (colour, marker) on the plot: the runs of one seed group (add_seed_groups) share a colour
    and differ in their marker, so a comparison of several configs by 3 seeds stays readable past the
    palette's 10 colours; runs outside any group (a group of one) get a colour each, with a circle."""
    import matplotlib

    groups = data.get("groups") or [{"runs": [r]} for r in data["runs"]]
    palette = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"].colors
    styles: dict[str, tuple[str, str]] = {}
    for i, g in enumerate(groups):
        colour = matplotlib.colors.to_hex(palette[i % len(palette)])
        by_seed = sorted(g["runs"], key=lambda r: [_seed_order(_get(r["config"], k)) for k in SEED_KEYS[:3]])
        for j, r in enumerate(by_seed):  # the lowest seeds get a circle, the next a square, ...
            styles[r["label"]] = (colour, MARKERS[j % len(MARKERS)])
    return styles


def _seed_order(seed: Any) -> tuple[int, float, str]:
    """Numbers in numeric order (2 before 10), then anything else (None: no seed) by its text."""
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def _x_of(e: dict[str, Any], x: str) -> float | None:
    return e["iteration"] if x == "iteration" else (e.get("compute") or {}).get("cumulative_flops")


def _err(m: dict[str, Any], key: str) -> tuple[float, float]:
    ci = (m.get("intervals") or {}).get(key)
    return (max(100 * (m[key] - ci[0]), 0.0), max(100 * (ci[1] - m[key]), 0.0)) if ci else (0.0, 0.0)


def _pct_ci(m: dict[str, Any], key: str) -> str:
    ci = (m.get("intervals") or {}).get(key)
    return _pct(m.get(key)) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _without_seeds(cfg: dict[str, Any]) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(cfg)
    for dotted in SEED_KEYS:
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    out.pop("iterations", None)  # a run extended by more iterations is the same config
    return out


def _final(run: dict[str, Any]) -> dict[str, Any] | None:
    """The run's last iteration with a finished test evaluation."""
    done = [e for e in run["report"]["iterations"] if e.get("eval") and e["eval"].get("per_problem")]
    return done[-1] if done else None


def add_seed_groups(data: dict[str, Any]) -> None:
    """In place: ``data["groups"]`` (runs whose configs differ only in their seeds, each with the mean and
    spread of every metric by iteration over its seeds) and ``data["paired"]`` (every pair of groups, a
    single run being a group of one: the difference of each metric at their final iterations, seeds
    pooled per problem, with its paired bootstrap interval)."""
    from rest_em.intervals import method, metric_values, paired_difference, pool_seeds

    groups: list[dict[str, Any]] = []
    for r in data["runs"]:
        key, seeds = _without_seeds(r["config"]), [_get(r["config"], k) for k in SEED_KEYS[:3]]
        for g in groups:  # same config, other seeds (a run with the same seeds again is a run of its own)
            if g["key"] == key and seeds not in [[_get(o["config"], k) for k in SEED_KEYS[:3]] for o in g["runs"]]:
                g["runs"].append(r)
                break
        else:
            groups.append({"key": key, "runs": [r]})
    keys = data["keys"]
    for g in groups:
        labels = [r["label"] for r in g["runs"]]
        g["label"] = labels[0] if len(labels) == 1 else _common_label(labels)
        g["algorithm"] = g["runs"][0]["report"].get("algorithm", "rest_em")
        g["seeds"] = [{k: _get(r["config"], k) for k in SEED_KEYS[:3]} for r in g["runs"]]
        g["by_iteration"] = _seed_spread(g["runs"], keys)
        finals = [_final(r) for r in g["runs"]]
        g["final_iterations"] = [None if f is None else f["iteration"] for f in finals]
        g["pooled"] = {k: pool_seeds([metric_values(f["eval"]["per_problem"], k) for f in finals if f]) for k in keys} \
            if any(finals) else None
        del g["key"]
    pairs = []
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            if a["pooled"] is None or b["pooled"] is None:
                continue
            diffs = {k: paired_difference(a["pooled"][k], b["pooled"][k]) for k in keys}
            pairs.append({"a": a["label"], "b": b["label"], "diffs": {k: d for k, d in diffs.items() if d is not None}})
    data["groups"], data["paired"], data["intervals_method"] = groups, pairs, method()


def _common_label(labels: list[str]) -> str:
    import os

    prefix = os.path.commonprefix(labels).rstrip("-_ .")
    return f"{prefix or labels[0]} ({len(labels)} seeds)"


def _seed_spread(runs: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Per iteration: each metric's mean over the seeds that evaluated it, its min, max and sample SD."""
    import statistics

    iterations = sorted({e["iteration"] for r in runs for e in r["report"]["iterations"]})
    out = []
    for t in iterations:
        row: dict[str, Any] = {"iteration": t}
        for k in keys:
            vals = [e["eval"][k] for r in runs for e in r["report"]["iterations"]
                    if e["iteration"] == t and e.get("eval") and e["eval"].get(k) is not None]
            row[k] = None if not vals else {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals),
                                            "sd": statistics.stdev(vals) if len(vals) > 1 else None, "seeds": len(vals)}
        out.append(row)
    return out


def uncertainty_lines(data: dict[str, Any]) -> list[str]:
    """The comparison's seed table (when some config ran with several seeds) and its paired differences."""
    from rest_em.intervals import describe

    keys = data["keys"]
    lines = ["", "## Uncertainty", "",
             f"Figures in brackets are {describe(data['intervals_method'])}. Paired differences (percentage points, "
             "`b - a`) compare two runs problem by problem on the same test problems "
             "at each run's final evaluated iteration; runs of one config with several seeds are pooled (each "
             "problem's value averaged over the seeds) before the bootstrap. \\* marks an interval that excludes 0."]
    multi = [g for g in data.get("groups", []) if len(g["runs"]) > 1]
    if multi:
        lines += ["", "### Across seeds (mean, min-max and SD over the seeds)", "",
                  "| runs | algorithm | seeds | iter | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 4)]
        for g in multi:
            for row in g["by_iteration"]:
                n = max((row[k] or {}).get("seeds", 0) for k in keys)
                lines.append(f"| {g['label']} | {g['algorithm']} | {n} | {row['iteration']} | "
                             + " | ".join(_spread(row[k]) for k in keys) + " |")
    if data.get("paired"):
        lines += ["", "### Paired differences between runs (`b - a`, final iterations)", "",
                  "| a | b | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
        for p in data["paired"]:
            lines.append(f"| {p['a']} | {p['b']} | " + " | ".join(_signed(p["diffs"].get(k)) for k in keys) + " |")
    return lines


def _spread(x: dict[str, Any] | None) -> str:
    if not x:
        return "—"
    sd = "" if x["sd"] is None else f", SD {100 * x['sd']:.1f}"
    return f"{100 * x['mean']:.1f} ({100 * x['min']:.1f}-{100 * x['max']:.1f}{sd})"


def _signed(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    lo, hi = d["interval"]
    return f"{100 * d['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" + (" \\*" if d["significant"] else "")
