"""Training curves of an online run for the report: ``reward.png`` beside ``metrics.png``, and a section of
report.md with one row per evaluated checkpoint.

    markdown = write_training_curves(run_dir, partial_credit)   # "" for runs without grpo/steps.jsonl (ReST-EM)

Read from the run directory alone (``grpo/steps.jsonl`` and the ``train`` markers), like the rest of
the report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rest_em.rundir import RunDir, read_rows

logger = logging.getLogger(__name__)

PNG = "reward.png"


def _fmt(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def write_training_curves(run_dir: Path, partial_credit: dict[str, float] | None = None) -> str:
    """Draw ``reward.png`` and return the report.md section ("" when the run has no step log);
    ``partial_credit`` is the run's ``grpo.partial_credit`` (named in the reward rule)."""
    path = Path(run_dir) / "grpo" / "steps.jsonl"
    if not path.exists():
        return ""
    rows = read_rows(path)
    if rows:
        plot_curves(rows, Path(run_dir) / PNG)
    rd = RunDir(Path(run_dir))
    lines = ["", "## Online training (GRPO)", "",
             f"Reward = {reward_rule(partial_credit or {})}. Curves: [{PNG}]({PNG}).", "",
             f"![reward curve]({PNG})", "",
             "| iter | steps | reward mean | reward std | groups with zero reward std | completion length | KL "
             "| pass/fail/error | reward time / step time |", "|" + "---|" * 9]
    for t in rd.iterations():
        info = rd.info(t, "train")
        if t == 0 or not info or info.get("algorithm") != "grpo":
            continue
        v = info.get("verdicts") or {}
        share = info.get("reward_share")
        lines.append(
            f"| {t} | {info['first_step']}-{info['steps']} | {_fmt(info.get('reward_mean'))} | {_fmt(info.get('reward_std'))} "
            f"| {_fmt(info.get('frac_reward_zero_std'), 2)} | {_fmt(info.get('completion_length'), 1)} | {_fmt(info.get('kl'), 4)} "
            f"| {v.get('pass', 0)}/{v.get('fail', 0)}/{v.get('error', 0)} "
            f"| {info.get('reward_s', 0):.0f} s / {info.get('step_s', 0):.0f} s"
            + (f" ({100 * share:.1f}%)" if share is not None else "") + " |")
    return "\n".join(lines) + "\n"


def reward_rule(partial_credit: dict[str, float]) -> str:
    """How the run's verdicts became rewards."""
    fail = "fail 0" + "".join(f", fail `{k}` {v:g}" for k, v in sorted(partial_credit.items()) if v)
    return f"the verifier's verdict (pass 1, {fail}; `error` is no reward)"


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])

    panels = [("reward", "reward mean"), ("frac_reward_zero_std", "groups with zero reward std"),
              ("completion_length", "completion length (tokens)")]
    if any(r.get("kl") is not None for r in rows):
        panels.append(("kl", "KL to the base model"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True)
    for ax, (key, label) in zip(axes, panels):
        xs, ys = series(key)
        ax.plot(xs, ys, ".-", lw=0.8, ms=3, label=label)
        if key == "reward" and len(ys) >= 5:  # a running mean: single steps are noisy
            w = max(2, len(ys) // 10)
            smooth = [sum(ys[max(0, i - w + 1):i + 1]) / len(ys[max(0, i - w + 1):i + 1]) for i in range(len(ys))]
            ax.plot(xs, smooth, "-", lw=2, label=f"running mean ({w} steps)")
        if key == "reward":  # the share of passing completions: the reward mean unless fails earn partial credit
            passed = [(r["step"], v["pass"] / (v["pass"] + v["fail"])) for r in rows
                      if (v := r.get("verdicts")) and v.get("pass", 0) + v.get("fail", 0)]
            ax.plot([p[0] for p in passed], [p[1] for p in passed], "x--", lw=0.8, ms=3, label="pass rate")
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("step")
    axes[0].set_title(f"GRPO training, steps 1-{max(steps)}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
