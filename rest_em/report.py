"""The run report, rebuilt from the run directory alone (``rest-em report RUN_DIR`` does the same).

    paths = write_report(Path("runs/default"))    # report.md, report.json, metrics.png

One row per iteration, iteration 0 (the base model) first: greedy pass@1, pass@k for the k list and
maj@k on the test split (overall and per level), the transfer set, train coverage, SFT set size,
verdict counts including ``error``, and the time and tokens/s of each stage. Rows of iterations
still running show what has finished so far.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from rest_em.rundir import RunDir
from verifiers.io import write_text_atomic

logger = logging.getLogger(__name__)


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def read_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}


def collect(run_dir: Path, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the report shows, as data (this is report.json); ``cfg``: the run's config.yaml, if read."""
    rd = RunDir(run_dir)
    cfg = read_config(run_dir) if cfg is None else cfg
    entries = []
    for t in rd.iterations():
        d = rd.iter_dir(t)
        train = rd.info(t, "train")
        filt = rd.info(t, "filter")
        notes = []
        if t == 0:
            policy = "base model"
        elif train is None:
            policy = "(M-step not finished)"
        elif train.get("skipped"):
            start = _policy_name(run_dir, train.get("base_model"))
            policy = f"{start} (M-step skipped)"
            notes.append(f"iteration {t}: M-step skipped ({train.get('reason')}); the {start} is this iteration's policy")
        else:
            policy = f"iter_{t:02d}/checkpoint"
        stage = {name: rd.info(t, name) or {} for name in ("samples", "verdicts", "eval_samples", "transfer_samples")}
        entries.append({
            "iteration": t,
            "policy": policy,
            "eval": _load_json(d / "eval" / "metrics.json"),
            "transfer": _load_json(d / "transfer" / "metrics.json"),
            "train_set": None if filt is None else {
                "coverage": filt["coverage"], "problems_with_pass": filt["problems_with_pass"],
                "num_problems": filt["num_problems"], "sft_size": filt["num_kept"], "verdicts": filt["verdicts"],
                "error_reasons": filt["error_reasons"], "duplicates_dropped": filt["duplicates_dropped"],
                "capped_dropped": filt["capped_dropped"]} | (
                {"sft_size": rd.info(t, "dataset")["num_rows"]} if rd.done(t, "dataset") else {}),
            "timing": {
                "estep_sampling_s": stage["samples"].get("seconds"),
                "estep_tokens_per_s": stage["samples"].get("tokens_per_s"),
                "estep_verify_s": stage["verdicts"].get("seconds"),
                "mstep_s": None if train is None else train.get("seconds"),
                "mstep_tokens_per_s": None if train is None else train.get("tokens_per_s"),
                "eval_sampling_s": stage["eval_samples"].get("seconds"),
                "eval_tokens_per_s": stage["eval_samples"].get("tokens_per_s"),
                "transfer_sampling_s": stage["transfer_samples"].get("seconds"),
            },
            "notes": notes,
            "estep_reasons": _estep_reasons(run_dir, t),
            "extracted_by": _extracted_by(run_dir, t),
            # the M-step's own rows where the algorithm has them (rest_em/algorithms/): counts by source, pairs
            "dataset": {k: v for k, v in (rd.info(t, "dataset") or {}).items() if k not in ("finished_at", "seconds")}
            or None,
        })
    ev = cfg.get("eval", {})
    data = {"run": cfg.get("run", {}).get("name"), "run_dir": str(run_dir), "task": cfg.get("task", {}).get("name"),
            "algorithm": cfg.get("algorithm", "rest_em"),
            "transfer_task": cfg.get("task", {}).get("transfer", {}).get("name"),
            "model": cfg.get("model", {}).get("path"), "k_list": ev.get("k_list", []) if ev.get("n") else [],
            "maj_k": ev.get("maj_k") if ev.get("n") else None, "iterations": entries,
            "data": _load_json(run_dir / "data.json")}  # task dataset: rows read and skipped (rest_em/tasks/dataset.py)
    add_uncertainty(data, run_dir)  # intervals and paired differences (rest_em/intervals.py)
    from rest_em.compute import add_compute

    add_compute(data, run_dir, cfg)  # tokens, verifier calls, FLOPs, seconds per iteration
    return data


def _policy_name(run_dir: Path, path: str | None) -> str:
    """``iter_NN/checkpoint`` for a model inside the run directory, else ``base model``."""
    try:
        return str(Path(path).resolve().relative_to(Path(run_dir).resolve())) if path else "base model"
    except ValueError:
        return "base model"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _secs(s: Any, tps: Any = None) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" + (f" ({tps:.0f} tok/s)" if tps else "")


def metric_keys(data: dict[str, Any]) -> list[str]:
    keys = ["greedy_pass@1"] + [f"pass@{k}" for k in data["k_list"]]
    maj = f"maj@{data['maj_k']}" if data["maj_k"] else None
    # maj@k is not defined for code; a column no evaluation computed is left out, not shown empty.
    if maj and any(e.get("eval") for e in data["iterations"]) and not any(
            maj in (e.get(split) or {}) for e in data["iterations"] for split in ("eval", "transfer")):
        maj = None
    return keys + ([maj] if maj else [])


def render_markdown(data: dict[str, Any], algorithm_lines: list[str] | None = None) -> str:
    """report.md; ``algorithm_lines``: the algorithm's own section (``Algorithm.report_section``)."""
    keys = metric_keys(data)
    lines = [f"# ReST-EM run `{data['run']}`", "",
             f"Task `{data['task']}`, base model `{data['model']}`. Metrics in percent on the held-out test split; "
             "iteration 0 is the base model. Verdicts are pass/fail/error (error = the verifier side broke).", "",
             "| iter | policy | " + " | ".join(keys) + " | eval errors | train coverage | SFT size "
             "| E-step pass/fail/error | E-step sampling | M-step | eval sampling |",
             "|" + "---|" * (len(keys) + 9)]
    for e in data["iterations"]:
        m, ts, tm = e["eval"] or {}, e["train_set"], e["timing"]
        errors = sum(c.get("error", 0) for c in m.get("verdicts", {}).values()) if m else None
        lines.append(
            f"| {e['iteration']} | {e['policy']} | " + " | ".join(_pct_ci(m, k) for k in keys)
            + f" | {'—' if errors is None else errors} | {_pct(ts['coverage']) if ts else '—'} | {ts['sft_size'] if ts else '—'}"
            + f" | {'/'.join(str(ts['verdicts'].get(o, 0)) for o in ('pass', 'fail', 'error')) if ts else '—'}"
            + f" | {_secs(tm['estep_sampling_s'], tm['estep_tokens_per_s'])} | {_secs(tm['mstep_s'], tm['mstep_tokens_per_s'])}"
            + f" | {_secs(tm['eval_sampling_s'], tm['eval_tokens_per_s'])} |")
    lines += ["", "## Per level (test split)", "", "| iter | level | problems | " + " | ".join(keys) + " |",
              "|" + "---|" * (len(keys) + 3)]
    for e in data["iterations"]:
        for level, m in ((e["eval"] or {}).get("by_level") or {}).items():
            lines.append(f"| {e['iteration']} | {level} | {m['num_problems']} | " + " | ".join(_pct_ci(m, k) for k in keys) + " |")
    if data["transfer_task"]:
        lines += ["", f"## Transfer set: `{data['transfer_task']}`", "", "| iter | problems | " + " | ".join(keys) + " |",
                  "|" + "---|" * (len(keys) + 2)]
        for e in data["iterations"]:
            m = e["transfer"] or {}
            lines.append(f"| {e['iteration']} | {m.get('num_problems', '—')} | " + " | ".join(_pct_ci(m, k) for k in keys) + " |")
    lines += algorithm_lines or []
    lines += _data_lines(data.get("data"))
    lines += uncertainty_lines(data)
    from rest_em.compute import compute_markdown

    lines += compute_markdown(data)
    lines += _reason_lines(data)
    lines += _extraction_lines(data)
    notes = [n for e in data["iterations"] for n in e["notes"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _data_lines(info: dict[str, Any] | None) -> list[str]:
    """Task `dataset`: how many rows were read and skipped as bad, by reason, with their ids."""
    if not info:
        return []
    lines = ["", "## Data", "", f"{info.get('rows', 0)} rows read from {', '.join(info.get('sources', []))}; "
             f"{info.get('skipped', 0)} skipped as bad"
             + (" (" + ", ".join(f"{k}: {v}" for k, v in (info.get("skipped_by_reason") or {}).items()) + ")"
                if info.get("skipped") else "") + "."]
    ids = info.get("skipped_ids") or []
    if ids:
        lines.append("Skipped ids: " + ", ".join(map(str, ids[:50])) + (f" and {len(ids) - 50} more" if len(ids) > 50 else "") + ".")
    return lines


# --- intervals and paired differences (rest_em/intervals.py) ---------------------------------


def _per_problem_from_verdicts(run_dir: Path, iteration: int, split: str) -> list[dict[str, Any]] | None:
    """Per-problem greedy pass@1 and pass@k rebuilt from ``verdicts.jsonl`` for metrics.json files written
    before they kept ``per_problem`` (no levels, no maj@k: those need the problems and the verifier)."""
    from rest_em.metrics import EvalRecord, compute_metrics
    from verifiers.io import read_jsonl

    path = RunDir(run_dir).iter_dir(iteration) / split / "verdicts.jsonl"
    if not path.exists():
        return None
    records: dict[str, EvalRecord] = {}
    for _, v in sorted(read_jsonl(path), key=lambda nv: (nv[1]["mode"], nv[1]["sample_idx"])):
        r = records.setdefault(v["problem_id"], EvalRecord(v["problem_id"], None))
        if v["mode"] == "greedy":
            r.greedy = v["verdict"]
        else:
            r.samples.append((v["verdict"], None))
    k_list = [k for k in _k_list_of(run_dir) if all(len(r.samples) >= k for r in records.values())]
    return compute_metrics(list(records.values()), k_list, None, None)["per_problem"]


def _k_list_of(run_dir: Path) -> list[int]:
    cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    ev = cfg.get("eval", {})
    return list(ev.get("k_list", [])) if ev.get("n") else []


def add_uncertainty(data: dict[str, Any], run_dir: Path) -> None:
    """In place: every evaluation's ``intervals`` (and its ``by_level`` rows'), each iteration's ``paired``
    differences against iteration 0 and the previous iteration (test split), and ``intervals_method``."""
    from rest_em import intervals

    data["intervals_method"] = intervals.method()
    keys = metric_keys(data)
    for e in data["iterations"]:
        for split in ("eval", "transfer"):
            m = e.get(split)
            if not m:
                continue
            if "per_problem" not in m:
                rebuilt = _per_problem_from_verdicts(run_dir, e["iteration"], split)
                if rebuilt is not None:
                    m["per_problem"] = rebuilt
                    m["per_problem_rebuilt_from_verdicts"] = True
            intervals.add_intervals(m, keys)
    by_t = {e["iteration"]: e for e in data["iterations"]}
    for e in data["iterations"]:
        t = e["iteration"]
        e["paired"] = {}
        for name, other in (("vs_iteration_0", 0), ("vs_previous", t - 1)):
            if t == 0 or other not in by_t or (name == "vs_previous" and other == 0):
                continue
            e["paired"][name] = paired_metrics(by_t[other].get("eval"), e.get("eval"), keys)


def paired_metrics(a: dict[str, Any] | None, b: dict[str, Any] | None, keys: list[str]) -> dict[str, Any]:
    """Metric -> ``b - a`` with its paired bootstrap interval, over the problems both evaluated."""
    from rest_em.intervals import metric_values, paired_difference

    if not a or not b or not a.get("per_problem") or not b.get("per_problem"):
        return {}
    out = {}
    for k in keys:
        d = paired_difference(metric_values(a["per_problem"], k), metric_values(b["per_problem"], k))
        if d is not None:
            out[k] = d
    return out


def _pct_ci(m: dict[str, Any], key: str) -> str:
    """``34.4 [21.9, 46.9]``: the figure and its interval in percent (the figure alone where none)."""
    ci = (m.get("intervals") or {}).get(key)
    return _pct(m.get(key)) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _signed(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    lo, hi = d["interval"]
    return f"{100 * d['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" + (" \\*" if d["significant"] else "")


def uncertainty_lines(data: dict[str, Any]) -> list[str]:
    """The report's interval method and the paired differences between iterations (lines)."""
    from rest_em.intervals import describe

    if "intervals_method" not in data:  # data not made by collect() (no intervals were computed)
        return []
    keys = metric_keys(data)
    lines = ["", "## Uncertainty", "",
             f"Figures in brackets are {describe(data['intervals_method'])}: how far a figure can move when the test "
             "problems are redrawn. Paired differences (percentage points) compare two evaluations problem by problem "
             "(the same test problems); \\* marks an interval that excludes 0."]
    maj_by = next((e[s]["maj_by"] for e in data["iterations"] for s in ("eval", "transfer") if (e.get(s) or {}).get("maj_by")), None)
    if maj_by:
        lines[-1] += f" maj@k of programs votes by {maj_by}; programs that crash or time out do not vote."
    rows = [(e["iteration"], name, e["paired"].get(name)) for e in data["iterations"]
            for name in ("vs_iteration_0", "vs_previous") if (e.get("paired") or {}).get(name)]
    if rows:
        lines += ["", "| iter | against | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
        for t, name, diffs in rows:
            against = "iteration 0" if name == "vs_iteration_0" else f"iteration {t - 1}"
            lines.append(f"| {t} | {against} | " + " | ".join(_signed(diffs.get(k)) for k in keys) + " |")
    return lines


# --- verdict reasons (code runs show why samples failed) -------------------------------------


def _estep_reasons(run_dir: Path, iteration: int) -> dict[str, dict[str, int]] | None:
    from rest_em.metrics import reason_counts
    from verifiers.io import read_jsonl

    path = RunDir(run_dir).iter_dir(iteration) / "verdicts.jsonl"
    return reason_counts([row for _, row in read_jsonl(path)]) if path.exists() else None


def _extracted_by(run_dir: Path, iteration: int) -> dict[str, dict[str, int]] | None:
    """Per stage (E-step, eval, transfer): how many math answers each extraction policy found (``extracted_by``
    of the verdict rows: ``last_boxed``, ``whole_response``, ``last_math`` for a short wrapper, ...)."""
    from verifiers.io import read_jsonl

    d = RunDir(run_dir).iter_dir(iteration)
    out: dict[str, dict[str, int]] = {}
    for stage, path in (("E-step", d / "verdicts.jsonl"), ("eval", d / "eval" / "verdicts.jsonl"),
                        ("transfer", d / "transfer" / "verdicts.jsonl")):
        if path.exists():
            counts: dict[str, int] = {}
            for _, row in read_jsonl(path):
                if row.get("extracted_by"):
                    counts[row["extracted_by"]] = counts.get(row["extracted_by"], 0) + 1
            if counts:
                out[stage] = dict(sorted(counts.items()))
    return out or None


def _extraction_lines(data: dict[str, Any]) -> list[str]:
    rows = [(e["iteration"], stage, c) for e in data["iterations"] for stage, c in (e.get("extracted_by") or {}).items()]
    if not rows:
        return []
    cols = sorted({k for _, _, c in rows for k in c})
    lines = ["", "## How answers were extracted (math verdicts)", "",
             "| iter | stage | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    lines += [f"| {t} | {stage} | " + " | ".join(str(c.get(k, 0)) for k in cols) + " |" for t, stage, c in rows]
    return lines


def _reason_lines(data: dict[str, Any]) -> list[str]:
    """A table of verdict reasons (wrong_answer, timeout, runtime_error, syntax_error, ...) per stage."""
    rows = [(e["iteration"], stage, counts) for e in data["iterations"]
            for stage, counts in (("E-step", e.get("estep_reasons")), ("eval", (e["eval"] or {}).get("reasons")),
                                  ("transfer", (e["transfer"] or {}).get("reasons")))
            if counts]
    if not rows:
        return []
    cols = sorted({(o, r) for _, _, c in rows for o, rs in c.items() for r in rs}, key=lambda c: (c[0] != "pass", c))
    lines = ["", "## Verdict reasons (samples)", "", "| iter | stage | " + " | ".join(f"{o}: {r}" for o, r in cols) + " |",
             "|" + "---|" * (len(cols) + 2)]
    for t, stage, c in rows:
        lines.append(f"| {t} | {stage} | " + " | ".join(str(c.get(o, {}).get(r, 0)) for o, r in cols) + " |")
    return lines


def algorithm_section(run_dir: Path, data: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The run's algorithm's own lines of report.md, asked of its class through the registry (so this module
    imports no algorithm); none when the algorithm cannot be found (a plugin that is not there any more)."""
    from rest_em import registry

    try:
        cls = registry.get(data.get("algorithm") or "rest_em", plugins=cfg.get("plugins") or [])
    except (KeyError, registry.RegistryError) as exc:
        logger.warning("report of %s: no section of algorithm %r (%s)", run_dir, data.get("algorithm"), exc)
        return []
    return cls.report_section(run_dir, data, cfg)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in metric_keys(data):
        for split, style in (("eval", "-o"), ("transfer", "--s")):
            pts = [(e["iteration"], 100 * e[split][key]) for e in data["iterations"]
                   if e.get(split) and e[split].get(key) is not None]
            if pts:
                label = key if split == "eval" else f"{key} ({data['transfer_task']})"
                ax.errorbar(*zip(*pts), yerr=_yerr(data, split, key), fmt=style, label=label, capsize=3, elinewidth=0.8)
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel("percent (bars: 95% bootstrap interval over test problems)")
    ax.set_title(f"ReST-EM: {data['task']}")
    ax.set_xticks([e["iteration"] for e in data["iterations"]])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _yerr(data: dict[str, Any], split: str, key: str) -> list[list[float]]:
    """Error bars (percent below, above) of the plotted points from their intervals (0 where none)."""
    lows, highs = [], []
    for e in data["iterations"]:
        m = e.get(split)
        if not m or m.get(key) is None:
            continue
        ci = (m.get("intervals") or {}).get(key)
        lows.append(100 * (m[key] - ci[0]) if ci else 0.0)
        highs.append(100 * (ci[1] - m[key]) if ci else 0.0)
    return [[max(x, 0.0) for x in lows], [max(x, 0.0) for x in highs]]


def write_report(run_dir: Path) -> Path:
    """Rewrite report.json, report.md and metrics.png; returns the path of report.md."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    data = collect(run_dir, cfg)
    write_text_atomic(run_dir / "report.json", json.dumps(data, indent=1))
    write_text_atomic(run_dir / "report.md", render_markdown(data, algorithm_section(run_dir, data, cfg)))
    plot(data, run_dir / "metrics.png")
    logger.info("report written to %s", run_dir / "report.md")
    return run_dir / "report.md"
