"""What an iteration cost: tokens sampled and trained, verifier calls, a FLOPs estimate, wall time per stage.

    row = iteration_compute(RunDir(run_dir), t, num_params)    # report.json: iterations[t]["compute"]
    n, where = parameter_count(run_dir, cfg)                    # N from the model's safetensors headers

Read from the stage markers of the run directory alone, so every report (and ``rest-em compare``)
rebuilds it. Per iteration:

- ``tokens_sampled_estep`` / ``tokens_sampled_eval``: generated tokens of the E-step and of the held-out
  evaluations (test and transfer, greedy and sampled); prompt tokens are not counted.
- ``tokens_trained``: tokens the M-step's forward passes covered, prompt and completion, times the epochs
  run (``supervised_tokens_trained``: those that carry the loss). M-steps recorded before these counts
  existed give ``tokens_per_s * seconds`` (``tokens_trained_estimated: true``) and no supervised count.
- ``verifier_calls``: verdicts computed (one per sample: E-step, test and transfer).
- ``flops``: ``2 N`` per sampled token plus ``6 N`` per trained token (forward 2N, backward 4N; the
  standard dense-transformer estimate, attention and prompt prefill left out), ``N`` the model's
  parameter count; ``cumulative_flops`` adds the iterations up to this one, iteration 0 included.
- ``seconds``: wall seconds of every finished stage, by stage name (``eval_behaviour``: the code
  programs run for maj@k).
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path
from typing import Any, Mapping

from rest_em.rundir import RunDir

SAMPLE_STAGES_ESTEP = ("samples",)
SAMPLE_STAGES_EVAL = ("eval_samples", "transfer_samples")
VERDICT_STAGES = ("verdicts", "eval_verdicts", "transfer_verdicts")
TRAIN_STAGES = ("sft_train", "train")  # DPO's SFT start, then the M-step
STAGES = ("samples", "verdicts", "filter", "dataset", "sft_train", "train", "eval_samples", "eval_verdicts",
          "eval_behaviour", "eval", "transfer_samples", "transfer_verdicts", "transfer_behaviour", "transfer")


def safetensors_parameters(model_dir: Path) -> int | None:
    """Parameters stored in ``model_dir``'s ``*.safetensors`` files, read from their headers (no tensors loaded)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with f.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        total += sum(prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total


def parameter_count(run_dir: Path, cfg: Mapping[str, Any]) -> tuple[int | None, str]:
    """``(N, where it was read)``: a checkpoint of the run (same architecture as the base model), else the
    base model's directory; ``(None, why)`` when neither is on this machine."""
    rd = RunDir(run_dir)
    for t in rd.iterations():
        for name in ("checkpoint", "sft_checkpoint"):
            d = rd.iter_dir(t) / name
            n = safetensors_parameters(d) if d.is_dir() else None
            if n:
                return n, str(d.relative_to(run_dir))
    path = (cfg.get("model") or {}).get("path")
    candidates = []
    if path:
        candidates.append(Path(path).expanduser())
        from rest_em.config import DEFAULT_MODEL_PATH

        if path == DEFAULT_MODEL_PATH:
            from rest_em.model_setup import default_model_dir

            candidates.append(default_model_dir())
    for d in candidates:
        n = safetensors_parameters(d) if d.is_dir() else None
        if n:
            return n, str(d)
    return None, f"no safetensors checkpoint in the run and model.path {path!r} is not a local model directory"


def iteration_compute(rd: RunDir, iteration: int, num_params: int | None) -> dict[str, Any]:
    info = {s: rd.info(iteration, s) for s in STAGES}

    def total(stages: tuple[str, ...], key: str) -> int | None:
        vals = [(info[s] or {}).get(key) for s in stages if info[s] is not None]
        vals = [v for v in vals if v is not None]
        return int(sum(vals)) if vals else None

    trained = supervised = None
    estimated = False
    for s in TRAIN_STAGES:
        m = info[s]
        if m is None or m.get("skipped"):
            continue
        if m.get("tokens_trained") is not None:
            trained = (trained or 0) + int(m["tokens_trained"])
            if m.get("supervised_tokens_trained") is not None:
                supervised = (supervised or 0) + int(m["supervised_tokens_trained"])
        elif m.get("tokens_per_s") and m.get("seconds"):
            trained = (trained or 0) + int(m["tokens_per_s"] * m["seconds"])
            estimated = True
    verdict_counts = [sum((info[s] or {}).get("counts", {}).values()) for s in VERDICT_STAGES if info[s] is not None]
    row: dict[str, Any] = {
        "tokens_sampled_estep": total(SAMPLE_STAGES_ESTEP, "tokens"),
        "tokens_sampled_eval": total(SAMPLE_STAGES_EVAL, "tokens"),
        "tokens_trained": trained,
        "supervised_tokens_trained": supervised,
        "verifier_calls": sum(verdict_counts) if verdict_counts else None,
        "seconds": {s: m["seconds"] for s, m in info.items() if m is not None and m.get("seconds") is not None},
    }
    if estimated:
        row["tokens_trained_estimated"] = True
    counted = [row["tokens_sampled_estep"], row["tokens_sampled_eval"], trained]
    sampled = (row["tokens_sampled_estep"] or 0) + (row["tokens_sampled_eval"] or 0)
    known = num_params is not None and any(x is not None for x in counted)
    row["flops"] = float(2 * num_params * sampled + 6 * num_params * (trained or 0)) if known else None  # type: ignore[operator]
    return row


def add_compute(data: dict[str, Any], run_dir: Path, cfg: Mapping[str, Any]) -> None:
    """``data["model_parameters"]`` and each iteration's ``compute`` (with ``cumulative_flops``), in place."""
    rd = RunDir(run_dir)
    n, where = parameter_count(run_dir, cfg)
    data["model_parameters"] = {"count": n, "from": where}
    cumulative = 0.0
    for e in data["iterations"]:
        row = iteration_compute(rd, e["iteration"], n)
        cumulative += row["flops"] or 0.0
        row["cumulative_flops"] = cumulative if n is not None else None
        e["compute"] = row


def _tok(x: Any) -> str:
    if x is None:
        return "—"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else str(x)


def compute_markdown(data: Mapping[str, Any]) -> list[str]:
    """The report's compute section (lines)."""
    mp = data.get("model_parameters") or {}
    n = mp.get("count")
    lines = ["", "## Compute", "",
             "FLOPs estimate: 2·N per sampled token + 6·N per trained token, N = "
             + (f"{n:,} parameters (from `{mp.get('from')}`)" if n else f"unknown ({mp.get('from')})")
             + "; prompt prefill and attention not counted. Tokens trained = forward tokens × epochs run "
             "(supervised: those with a loss). Wall seconds by stage.", "",
             "| iter | tokens sampled (E-step) | tokens sampled (eval) | tokens trained | supervised | verifier calls "
             "| FLOPs | cumulative FLOPs | seconds by stage |", "|---|---|---|---|---|---|---|---|---|"]
    for e in data["iterations"]:
        c = e.get("compute") or {}
        est = " (est.)" if c.get("tokens_trained_estimated") else ""
        secs = ", ".join(f"{s} {v:.0f}" for s, v in (c.get("seconds") or {}).items())
        lines.append(f"| {e['iteration']} | {_tok(c.get('tokens_sampled_estep'))} | {_tok(c.get('tokens_sampled_eval'))} "
                     f"| {_tok(c.get('tokens_trained'))}{est} | {_tok(c.get('supervised_tokens_trained'))} "
                     f"| {c.get('verifier_calls', '—') if c.get('verifier_calls') is not None else '—'} "
                     f"| {_flops(c.get('flops'))} | {_flops(c.get('cumulative_flops'))} | {secs or '—'} |")
    return lines


def _flops(x: Any) -> str:
    return "—" if x is None else f"{x:.3g}"
